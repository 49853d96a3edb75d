//! The compact model file, the form in which a trained model ships with fer (`models/`): every
//! value in 16 bits, half the size of `.fer`, and the same bytes every time the same weights are
//! written. burn's burnpack format records a random id for each parameter, so two runs with equal
//! weights give different `.fer` files; this format holds nothing but the config and the values
//! in the model's visiting order ([`crate::flatten`]), which the architecture alone fixes.
//!
//! ```text
//! b"FERHALF1"  u32 dtype (0 = f16, 1 = bf16)  u32 config_len  u64 value_count  u32 crc32
//! config JSON  value_count little-endian u16 values
//! ```
//! The CRC-32 (IEEE) covers the config JSON and the values. Values load as `f32`.

use std::path::Path;

use burn::tensor::Device;
use half::{bf16, f16};

use crate::atomic::write_atomic;
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::model::FerModel;
use crate::params::{flatten, with_values};

pub(crate) const MAGIC: &[u8; 8] = b"FERHALF1";
const HEADER: usize = 8 + 4 + 4 + 8 + 4;

/// How each value is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalfFormat {
    /// IEEE half precision: 11 significant bits, values up to 65,504 (checked when writing).
    F16,
    /// bfloat16: 8 significant bits, the range of `f32`.
    Bf16,
}

impl HalfFormat {
    fn code(self) -> u32 {
        match self {
            HalfFormat::F16 => 0,
            HalfFormat::Bf16 => 1,
        }
    }

    fn from_code(code: u32) -> Option<HalfFormat> {
        match code {
            0 => Some(HalfFormat::F16),
            1 => Some(HalfFormat::Bf16),
            _ => None,
        }
    }

    fn encode(self, value: f32) -> u16 {
        match self {
            HalfFormat::F16 => f16::from_f32(value).to_bits(),
            HalfFormat::Bf16 => bf16::from_f32(value).to_bits(),
        }
    }

    fn decode(self, bits: u16) -> f32 {
        match self {
            HalfFormat::F16 => f16::from_bits(bits).to_f32(),
            HalfFormat::Bf16 => bf16::from_bits(bits).to_f32(),
        }
    }
}

/// Whether `bytes` start like a compact model file.
pub fn is_compact(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The model as a compact file's bytes. Fails when a value does not fit the format (a non-finite
/// value, or one beyond f16's range), naming its position in the visiting order.
pub fn compact_bytes(model: &FerModel, format: HalfFormat) -> Result<Vec<u8>, ModelError> {
    let values = flatten(model);
    let config = serde_json::to_vec(model.config()).map_err(|e| ModelError::InvalidConfig(e.to_string()))?;
    let mut payload = Vec::with_capacity(config.len() + 2 * values.len());
    payload.extend_from_slice(&config);
    for (i, &v) in values.iter().enumerate() {
        let bits = format.encode(v);
        if v.is_finite() != format.decode(bits).is_finite() || !v.is_finite() {
            return Err(ModelError::InvalidConfig(format!("value {i} of the model ({v}) does not fit {format:?}")));
        }
        payload.extend_from_slice(&bits.to_le_bytes());
    }
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&format.code().to_le_bytes());
    out.extend_from_slice(&(config.len() as u32).to_le_bytes());
    out.extend_from_slice(&(values.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Parses a compact model file held in memory; `path` only names it in errors.
pub fn model_from_compact(bytes: &[u8], path: &Path, device: &Device) -> Result<FerModel, ModelError> {
    if !is_compact(bytes) {
        return Err(ModelError::NotAModel { path: path.into() });
    }
    if bytes.len() < HEADER {
        return Err(ModelError::BadConfig { path: path.into(), reason: "the header is truncated".into() });
    }
    let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let format = HalfFormat::from_code(u32_at(8)).ok_or_else(|| ModelError::BadConfig {
        path: path.into(),
        reason: format!("unknown value type {}", u32_at(8)),
    })?;
    let config_len = u32_at(12) as u64;
    let mut count = [0u8; 8];
    count.copy_from_slice(&bytes[16..24]);
    let count = u64::from_le_bytes(count);
    let payload = &bytes[HEADER..];
    let expected = config_len.saturating_add(count.saturating_mul(2));
    if payload.len() as u64 != expected {
        return Err(ModelError::Truncated { path: path.into(), expected, found: payload.len() as u64 });
    }
    let (want, found) = (u32_at(24), crc32fast::hash(payload));
    if want != found {
        return Err(ModelError::Corrupt { path: path.into(), expected: want, found });
    }
    let (config, values) = payload.split_at(config_len as usize);
    let config: ModelConfig = serde_json::from_slice(config)
        .map_err(|e| ModelError::BadConfig { path: path.into(), reason: e.to_string() })?;
    let model = FerModel::new(&config, device)
        .map_err(|e| ModelError::BadConfig { path: path.into(), reason: e.to_string() })?;
    let values: Vec<f32> = values.chunks_exact(2).map(|c| format.decode(u16::from_le_bytes([c[0], c[1]]))).collect();
    let found = values.len();
    with_values(model, &values).map_err(|needed| ModelError::Mismatch {
        path: path.into(),
        reason: format!("{found} values, the architecture in its config has {needed}"),
    })
}

/// Writes the compact file atomically.
pub fn save_compact(model: &FerModel, format: HalfFormat, path: &Path) -> Result<(), ModelError> {
    let bytes = compact_bytes(model, format)?;
    write_atomic(path, &bytes).map_err(|source| ModelError::Io { path: path.into(), source })
}
