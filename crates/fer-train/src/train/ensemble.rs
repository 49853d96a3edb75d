//! Ensembles: several runs of one recipe with consecutive seeds under one folder
//! (`member-1`, `member-2`, ...), and which saved weights of a run (or of its members) to use.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use fer_data::Dataset;
use serde::{Deserialize, Serialize};

use super::observer::{StopReason, TrainOptions, TrainOutcome};
use super::start::{resume, train};
use crate::checkpoint::checkpoint_path;
use crate::error::TrainError;
use crate::recipe::RunConfig;
use crate::run_files::write_json;

/// Member run folders of an ensemble run (`member-1`, `member-2`, ...).
fn member_dir(run_dir: &Path, k: usize) -> PathBuf {
    run_dir.join(format!("member-{k}"))
}

/// Trains (or continues) `members` runs with seeds `seed, seed+1, ...` under one folder.
pub fn train_ensemble(
    run_dir: &Path,
    config: &RunConfig,
    members: usize,
    data: &Dataset,
    device: &Device,
    options: TrainOptions<'_>,
) -> Result<Vec<TrainOutcome>, TrainError> {
    if members == 0 {
        return Err(TrainError::InvalidOption("--ensemble needs at least 1 member".into()));
    }
    std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
    write_json(&RunConfig::path(run_dir), config)?;
    write_json(&run_dir.join("ensemble.json"), &serde_json::json!({"members": members}))?;
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for k in 1..=members {
        let dir = member_dir(run_dir, k);
        let mut member = config.clone();
        member.recipe.seed = config.recipe.seed + (k as u64 - 1);
        options.observer.on_message(&format!("ensemble member {k}/{members} (seed {})", member.recipe.seed));
        let remaining = options.time_budget.map(|b| b.saturating_sub(started.elapsed()));
        let opts = TrainOptions {
            time_budget: remaining,
            stop: options.stop,
            max_steps: options.max_steps,
            observer: &mut *options.observer,
        };
        let outcome = if checkpoint_path(&dir).exists() {
            resume(&dir, data, device, opts)?
        } else {
            train(&dir, &member, data, device, opts)?
        };
        let stop = outcome.stop;
        outcomes.push(outcome);
        if stop != StopReason::Finished {
            break;
        }
    }
    Ok(outcomes)
}

/// Which of a run's saved weights to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Weights {
    /// `best.fer`: the trained weights of the best epoch (the report's protocol).
    #[default]
    Best,
    /// `best-ema.fer`: the weight average of its best epoch (recipes with `ema_decay`).
    Ema,
}

impl Weights {
    pub fn file_name(self) -> &'static str {
        match self {
            Weights::Best => "best.fer",
            Weights::Ema => "best-ema.fer",
        }
    }
}

/// The model files a run evaluates with: its `best.fer` (or `best-ema.fer`), or each ensemble
/// member's.
pub fn ensemble_members(run_dir: &Path, weights: Weights) -> Result<Vec<PathBuf>, TrainError> {
    let name = weights.file_name();
    let single = run_dir.join(name);
    if single.exists() {
        return Ok(vec![single]);
    }
    let mut members = Vec::new();
    for k in 1.. {
        let dir = member_dir(run_dir, k);
        if !dir.exists() {
            break;
        }
        let best = dir.join(name);
        if !best.exists() {
            return Err(TrainError::BadRun {
                path: dir,
                reason: format!("this ensemble member has no {name} (not one finished epoch yet{})", ema_hint(weights)),
            });
        }
        members.push(best);
    }
    if members.is_empty() {
        return Err(TrainError::BadRun {
            path: run_dir.into(),
            reason: format!("no {name} and no member-*/{name}: has it trained an epoch{}?", ema_hint(weights)),
        });
    }
    Ok(members)
}

fn ema_hint(weights: Weights) -> &'static str {
    match weights {
        Weights::Best => "",
        Weights::Ema => ", with a recipe that keeps a weight average such as --recipe fast",
    }
}
