//! One file holds everything a run needs to continue: where it is, what it has seen, the model
//! and the optimizer. It is written with temp file + fsync + rename, so a kill at any instant
//! leaves the previous checkpoint or the new one, never a torn file.
//!
//! ```text
//! b"FERCKPT3"  u64 state_len  u64 model_len  u64 optim_len  u64 ema_len  u32 crc32  state  model  optim  ema
//! ```
//! The CRC-32 covers everything after the header, so a damaged file is "corrupt", never a
//! resumed run on garbage. (`FERCKPT2` files, without it, and `FERCKPT1` files, without the
//! weight average either, still load.)

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, Device};
use fer_model::FerModel;
use serde::{Deserialize, Serialize};

use crate::ema::{Ema, flatten};
use crate::error::TrainError;
use crate::run_files::EpochRow;

const MAGIC_V1: &[u8; 8] = b"FERCKPT1";
const MAGIC_V2: &[u8; 8] = b"FERCKPT2";
const MAGIC: &[u8; 8] = b"FERCKPT3";

/// Where a run stands, and what it has recorded so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The epoch being run (0-based).
    pub epoch: usize,
    /// The next step within that epoch.
    pub step: usize,
    /// Running sums over the current epoch's finished steps.
    pub loss_sum: f64,
    pub correct: u64,
    pub seen: u64,
    pub seconds: f64,
    pub lr: f64,
    pub history: Vec<EpochRow>,
    pub best_val_acc: Option<f64>,
    pub best_epoch: Option<usize>,
    pub plateau_best_loss: Option<f64>,
    pub plateau_bad_epochs: usize,
    pub finished: bool,
    #[serde(default)]
    pub best_ema_val_acc: Option<f64>,
    /// Wall-clock seconds of all invocations so far (training, validation, checkpoints).
    #[serde(default)]
    pub wall_seconds: f64,
    /// What the run trains and validates on, to refuse a resume on other data.
    #[serde(default)]
    pub data: Option<DataFingerprint>,
}

/// The faces a run trains and validates on, in a few numbers: counts and a CRC-32 of every
/// pixel and label, in order. Computing it costs milliseconds for FER2013.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFingerprint {
    pub train_faces: usize,
    pub val_faces: usize,
    pub crc32: u32,
}

impl DataFingerprint {
    pub fn of(train: &fer_data::Dataset, val: &fer_data::Dataset) -> DataFingerprint {
        let mut crc = crc32fast::Hasher::new();
        for set in [train, val] {
            crc.update(set.pixels());
            let labels: Vec<u8> = set.labels().iter().map(|l| l.map_or(255, |e| e.id() as u8)).collect();
            crc.update(&labels);
        }
        DataFingerprint { train_faces: train.len(), val_faces: val.len(), crc32: crc.finalize() }
    }

    /// Why `now` is not the data this fingerprint was taken of, if it is not.
    pub fn differs(&self, now: &DataFingerprint) -> Option<String> {
        if self == now {
            return None;
        }
        Some(if (self.train_faces, self.val_faces) != (now.train_faces, now.val_faces) {
            format!(
                "it had {} training and {} validation faces, the data given now has {} and {}",
                self.train_faces, self.val_faces, now.train_faces, now.val_faces
            )
        } else {
            format!("same counts, but other pixels or labels (fingerprint {:08x}, now {:08x})", self.crc32, now.crc32)
        })
    }
}

pub struct Checkpoint {
    pub state: TrainState,
    pub model: FerModel,
    pub optimizer: Vec<u8>,
    /// The weight average, for recipes that keep one.
    pub ema: Option<Ema>,
}

pub(crate) fn checkpoint_path(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint.ckpt")
}

pub(crate) fn save_checkpoint(
    run_dir: &Path,
    state: &TrainState,
    model: &FerModel,
    optim: &ModuleOptimizer,
    ema: Option<&Ema>,
) -> Result<(), TrainError> {
    let path = checkpoint_path(run_dir);
    let bad = |reason: String| TrainError::BadCheckpoint { path: path.clone(), reason };
    let state_json = serde_json::to_vec(state).map_err(|e| bad(e.to_string()))?;
    let model_bytes = fer_model::model_bytes(model)?;
    let optim_bytes = optim.into_bytes().map_err(|e| bad(e.to_string()))?;
    let ema_bytes = ema.map(Ema::to_bytes).unwrap_or_default();
    let parts = [&state_json[..], &model_bytes[..], &optim_bytes[..], &ema_bytes[..]];
    let mut out = Vec::with_capacity(44 + parts.iter().map(|p| p.len()).sum::<usize>());
    out.extend_from_slice(MAGIC);
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
    }
    let mut crc = crc32fast::Hasher::new();
    for part in parts {
        crc.update(part);
    }
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
    fer_model::write_atomic(&path, &out).map_err(|source| TrainError::CheckpointWrite { path: path.clone(), source })
}

/// Reads a run's checkpoint; the model comes back on `device`.
pub fn load_checkpoint(run_dir: &Path, device: &Device) -> Result<Checkpoint, TrainError> {
    let path = checkpoint_path(run_dir);
    let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
    checkpoint_from_bytes(&bytes, &path, device)
}

/// Parses a checkpoint held in memory; `path` names it in errors. Every length in the header is
/// checked against the bytes present before anything is allocated from it.
pub fn checkpoint_from_bytes(bytes: &[u8], path: &Path, device: &Device) -> Result<Checkpoint, TrainError> {
    let bad = |reason: &str| TrainError::BadCheckpoint { path: path.into(), reason: reason.into() };
    let (parts, has_crc) = match bytes.get(..8) {
        Some(m) if m == MAGIC_V1 => (3, false),
        Some(m) if m == MAGIC_V2 => (4, false),
        Some(m) if m == MAGIC => (4, true),
        _ => return Err(bad("it does not start with the fer checkpoint header")),
    };
    let header = 8 + 8 * parts + if has_crc { 4 } else { 0 };
    if bytes.len() < header {
        return Err(bad("truncated"));
    }
    let lens: Vec<u64> =
        (0..parts).map(|i| u64::from_le_bytes(bytes[8 + 8 * i..16 + 8 * i].try_into().unwrap_or_default())).collect();
    let total = lens.iter().try_fold(header as u64, |acc, &l| acc.checked_add(l));
    if total != Some(bytes.len() as u64) {
        return Err(bad("truncated, or its header does not match its length"));
    }
    if has_crc {
        let at = 8 + 8 * parts;
        let expected = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        let found = crc32fast::hash(&bytes[header..]);
        if expected != found {
            return Err(TrainError::BadCheckpoint {
                path: path.into(),
                reason: format!(
                    "corrupt file: its checksum is {found:08x}, the header recorded {expected:08x} (the file changed \
                        after it was written)"
                ),
            });
        }
    }
    let mut at = header;
    let mut sections = lens.iter().map(|&l| {
        let part = &bytes[at..at + l as usize];
        at += l as usize;
        part
    });
    let (state_bytes, model_bytes, optim_bytes) =
        (sections.next().unwrap_or_default(), sections.next().unwrap_or_default(), sections.next().unwrap_or_default());
    let ema_bytes = sections.next().unwrap_or_default();
    let state: TrainState = serde_json::from_slice(state_bytes).map_err(|e| bad(&e.to_string()))?;
    let model = fer_model::model_from_bytes(model_bytes, path, device)?;
    let ema = if ema_bytes.is_empty() {
        None
    } else {
        let expected = flatten(&model).len();
        Some(Ema::from_bytes(ema_bytes, expected).ok_or_else(|| bad("the weight average does not fit the model"))?)
    };
    Ok(Checkpoint { state, model, optimizer: optim_bytes.to_vec(), ema })
}

pub(crate) fn restore_optimizer(
    optim: ModuleOptimizer,
    bytes: Vec<u8>,
    path: &Path,
) -> Result<ModuleOptimizer, TrainError> {
    let bad =
        |reason: String| TrainError::BadCheckpoint { path: path.into(), reason: format!("optimizer state: {reason}") };
    // burn-optim 0.22.1 panics ("Optimizer record tensors should carry a parameter id",
    // module_optimizer.rs:277) on a record whose tensor lacks its id, which only a damaged or
    // crafted file has; fuzzing found it. The checksum stops damage first; this stops the rest.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| optim.from_bytes(Bytes::from_bytes_vec(bytes)))) {
        Ok(result) => result.map_err(|e| bad(e.to_string())),
        Err(_) => Err(bad("a tensor without its parameter id (a damaged or crafted file)".into())),
    }
}
