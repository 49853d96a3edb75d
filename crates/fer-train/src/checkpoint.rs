//! One file holds everything a run needs to continue: where it is, what it has seen, the model
//! and the optimizer. It is written with temp file + fsync + rename, so a kill at any instant
//! leaves the previous checkpoint or the new one, never a torn file.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, Device};
use fer_model::FerModel;
use serde::{Deserialize, Serialize};

use crate::{EpochRow, TrainError};

const MAGIC: &[u8; 8] = b"FERCKPT1";

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
}

pub struct Checkpoint {
    pub state: TrainState,
    pub model: FerModel,
    pub optimizer: Vec<u8>,
}

pub(crate) fn checkpoint_path(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint.ckpt")
}

pub(crate) fn save_checkpoint(run_dir: &Path, state: &TrainState, model: &FerModel, optim: &ModuleOptimizer) -> Result<(), TrainError> {
    let path = checkpoint_path(run_dir);
    let bad = |reason: String| TrainError::BadCheckpoint { path: path.clone(), reason };
    let state_json = serde_json::to_vec(state).map_err(|e| bad(e.to_string()))?;
    let model_bytes = fer_model::model_bytes(model)?;
    let optim_bytes = optim.into_bytes().map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(32 + state_json.len() + model_bytes.len() + optim_bytes.len());
    out.extend_from_slice(MAGIC);
    for part in [&state_json[..], &model_bytes[..], &optim_bytes[..]] {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
    }
    for part in [&state_json[..], &model_bytes[..], &optim_bytes[..]] {
        out.extend_from_slice(part);
    }
    fer_model::write_atomic(&path, &out).map_err(|e| TrainError::io(&path, e))
}

/// Reads a run's checkpoint; the model comes back on `device`.
pub fn load_checkpoint(run_dir: &Path, device: &Device) -> Result<Checkpoint, TrainError> {
    let path = checkpoint_path(run_dir);
    let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
    let bad = |reason: &str| TrainError::BadCheckpoint { path: path.clone(), reason: reason.into() };
    if bytes.len() < 32 || &bytes[..8] != MAGIC {
        return Err(bad("it does not start with the fer checkpoint header"));
    }
    let len = |i: usize| u64::from_le_bytes(bytes[8 + 8 * i..16 + 8 * i].try_into().unwrap_or_default()) as usize;
    let (a, b, c) = (len(0), len(1), len(2));
    if bytes.len() != 32 + a + b + c {
        return Err(bad("truncated"));
    }
    let state: TrainState = serde_json::from_slice(&bytes[32..32 + a]).map_err(|e| bad(&e.to_string()))?;
    let model = fer_model::model_from_bytes(&bytes[32 + a..32 + a + b], &path, device)?;
    Ok(Checkpoint { state, model, optimizer: bytes[32 + a + b..].to_vec() })
}

pub(crate) fn restore_optimizer(optim: ModuleOptimizer, bytes: Vec<u8>, path: &Path) -> Result<ModuleOptimizer, TrainError> {
    optim
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| TrainError::BadCheckpoint { path: path.into(), reason: format!("optimizer state: {e}") })
}
