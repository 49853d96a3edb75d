//! One file per trained model: a small header, the model config as JSON, then the weights in
//! burn's burnpack format. The header records the weights' length, so a truncated file is
//! caught before burn reads it, and (since version 2) a CRC-32 of everything after it, so a
//! flipped byte is "corrupt file", never silently different weights.
//!
//! ```text
//! b"FERMODEL"  u32 version=2  u32 config_len  u64 weights_len  u32 crc32  config JSON  burnpack bytes
//! ```
//! (Version 1 files, without the checksum, still load.)

use std::path::Path;

use burn::store::{BurnpackStore, ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Bytes, Device};

use crate::atomic::write_atomic;
use crate::compact::{is_compact, model_from_compact};
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::model::FerModel;

const MAGIC: &[u8; 8] = b"FERMODEL";
const VERSION: u32 = 2;
const HEADER_V1: usize = 8 + 4 + 4 + 8;
const HEADER: usize = HEADER_V1 + 4;

/// The model as one byte buffer (see the module docs for the layout).
pub fn model_bytes(model: &FerModel) -> Result<Vec<u8>, ModelError> {
    let store_err = |reason: String| ModelError::Store { path: "<memory>".into(), reason };
    let mut store = BurnpackStore::from_bytes(None);
    model.save_into(&mut store).map_err(|e| store_err(e.to_string()))?;
    let weights = store.get_bytes().map_err(|e| store_err(e.to_string()))?;
    let config = serde_json::to_vec(model.config()).map_err(|e| store_err(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER + config.len() + weights.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(config.len() as u32).to_le_bytes());
    out.extend_from_slice(&(weights.len() as u64).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&config);
    crc.update(&weights);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&config);
    out.extend_from_slice(&weights);
    Ok(out)
}

/// Saves weights and config to one file, atomically.
pub fn save_model(model: &FerModel, path: &Path) -> Result<(), ModelError> {
    let bytes = model_bytes(model).map_err(|e| match e {
        ModelError::Store { reason, .. } => ModelError::Store { path: path.into(), reason },
        other => other,
    })?;
    write_atomic(path, &bytes).map_err(|source| ModelError::Io { path: path.into(), source })
}

/// Reads the config and weights of a model file.
pub fn load_model(path: &Path, device: &Device) -> Result<FerModel, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ModelError::NotFound { path: path.into() },
        _ => ModelError::Io { path: path.into(), source },
    })?;
    model_from_bytes(&bytes, path, device)
}

/// Parses a model held in memory; `path` only names it in errors.
/// Compact files (`models/*.ferc`, see [`crate::compact::compact_bytes`]) load here too.
pub fn model_from_bytes(bytes: &[u8], path: &Path, device: &Device) -> Result<FerModel, ModelError> {
    if is_compact(bytes) {
        return model_from_compact(bytes, path, device);
    }
    if bytes.len() < HEADER_V1 || &bytes[..8] != MAGIC {
        return Err(ModelError::NotAModel { path: path.into() });
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or_default());
    let version = u32_at(8);
    let header = match version {
        1 => HEADER_V1,
        VERSION if bytes.len() >= HEADER => HEADER,
        VERSION => return Err(ModelError::BadConfig { path: path.into(), reason: "the header is truncated".into() }),
        _ => {
            return Err(ModelError::BadConfig {
                path: path.into(),
                reason: format!("file format version {version}, this fer reads 1 and {VERSION}"),
            });
        }
    };
    let config_len = u32_at(12) as usize;
    let weights_len = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
    let available = bytes.len().saturating_sub(header + config_len) as u64;
    if bytes.len() < header + config_len || available != weights_len {
        return Err(ModelError::Truncated { path: path.into(), expected: weights_len, found: available });
    }
    if header == HEADER {
        let (expected, found) = (u32_at(24), crc32fast::hash(&bytes[HEADER..]));
        if expected != found {
            return Err(ModelError::Corrupt { path: path.into(), expected, found });
        }
    }
    let config: ModelConfig = serde_json::from_slice(&bytes[header..header + config_len])
        .map_err(|e| ModelError::BadConfig { path: path.into(), reason: e.to_string() })?;
    let mut model = FerModel::new(&config, device)
        .map_err(|e| ModelError::BadConfig { path: path.into(), reason: e.to_string() })?;
    let weights = Bytes::from_bytes_vec(bytes[header + config_len..].to_vec());
    let mut store = BurnpackStore::from_bytes(Some(weights));
    let result =
        model.load_from(&mut store).map_err(|e| ModelError::Mismatch { path: path.into(), reason: e.to_string() })?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(ModelError::Mismatch {
            path: path.into(),
            reason: format!(
                "{} errors, missing {:?}, unused {:?}",
                result.errors.len(),
                result.missing.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                result.unused
            ),
        });
    }
    Ok(model)
}

/// Writes the weights as SafeTensors, with tensor names a PyTorch user can map onto the same
/// architecture (see docs/MODEL-FILES.md for the table).
pub fn export_safetensors(model: &FerModel, path: &Path) -> Result<(), ModelError> {
    let mut store = SafetensorsStore::from_file(path)
        .skip_enum_variants(true)
        .overwrite(true)
        .metadata("fer.model_config", serde_json::to_string(model.config()).unwrap_or_default());
    model.save_into(&mut store).map_err(|e| ModelError::Store { path: path.into(), reason: e.to_string() })
}
