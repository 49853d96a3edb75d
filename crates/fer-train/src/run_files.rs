//! The files of a run folder besides the checkpoint: `config.json` (and other JSON notes such as
//! `best.json`) and `history.csv`, one [`EpochRow`] per epoch. Written atomically, so an
//! interrupted run never leaves half a file.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::recipe::RunConfig;

/// One row of `history.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub lr: f64,
    pub seconds: f64,
    pub images_per_s: f64,
    /// Seconds spent validating after this epoch (plain and averaged weights).
    #[serde(default)]
    pub eval_seconds: f64,
    /// Wall-clock seconds since the run started (across resumes) when this epoch's validation
    /// finished: the time-to-accuracy clock.
    #[serde(default)]
    pub wall_seconds: f64,
    /// Validation of the weight average, when the recipe keeps one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_val_acc: Option<f64>,
}

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| TrainError::InvalidOption(e.to_string()))?;
    fer_model::write_atomic(path, &text).map_err(|e| TrainError::io(path, e))
}

pub(crate) fn write_history(run_dir: &Path, rows: &[EpochRow]) -> Result<(), TrainError> {
    let with_ema = rows.iter().any(|r| r.ema_val_acc.is_some());
    let mut csv =
        String::from("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds,images_per_s,eval_seconds,wall_seconds");
    csv.push_str(if with_ema { ",ema_val_loss,ema_val_acc\n" } else { "\n" });
    for r in rows {
        csv.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:e},{:.3},{:.2},{:.3},{:.3}",
            r.epoch,
            r.train_loss,
            r.train_acc,
            r.val_loss,
            r.val_acc,
            r.lr,
            r.seconds,
            r.images_per_s,
            r.eval_seconds,
            r.wall_seconds
        ));
        if with_ema {
            let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
            csv.push_str(&format!(",{},{}", opt(r.ema_val_loss), opt(r.ema_val_acc)));
        }
        csv.push('\n');
    }
    let path = run_dir.join("history.csv");
    fer_model::write_atomic(&path, csv.as_bytes()).map_err(|e| TrainError::io(&path, e))
}

/// Reads a run folder's config.
pub fn read_run_config(run_dir: &Path) -> Result<RunConfig, TrainError> {
    let path = RunConfig::path(run_dir);
    let text = std::fs::read(&path).map_err(|e| TrainError::BadRun {
        path: run_dir.into(),
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    serde_json::from_slice(&text).map_err(|e| TrainError::BadRun { path: path.clone(), reason: e.to_string() })
}
