//! Starting a run and resuming one: checks the folder, the data and the recipe, builds (or
//! restores) the model, optimizer and weight average, and hands them to the loop.

use std::path::Path;

use burn::tensor::Device;
use fer_data::Dataset;
use fer_model::FerModel;

use super::observer::{TrainOptions, TrainOutcome};
use super::run_loop::{Run, run_loop};
use super::step::TrainStep;
use crate::batches::mix;
use crate::checkpoint::{DataFingerprint, TrainState, checkpoint_path, load_checkpoint, restore_optimizer};
use crate::ema::Ema;
use crate::error::TrainError;
use crate::optim::optimizer;
use crate::recipe::{Recipe, RunConfig};
use crate::run_files::{read_run_config, write_history, write_json};
use crate::runlock::RunLock;
use crate::whiten::whiten_first_conv;

/// Reads a checkpoint's optimizer state as `--resume` would, for a run trained with `recipe`.
/// (Resume does this itself; this is for checking a checkpoint without training, e.g. fuzzing.)
pub fn check_optimizer_state(recipe: &Recipe, bytes: Vec<u8>, path: &Path) -> Result<(), TrainError> {
    restore_optimizer(optimizer(recipe), bytes, path).map(|_| ())
}

pub(crate) fn splits(config: &RunConfig, data: &Dataset) -> Result<(Dataset, Dataset), TrainError> {
    let pick = |names: &[&str]| {
        data.select_splits(names)
            .map_err(|available| TrainError::MissingSplit { wanted: names.join(","), available: available.join(", ") })
    };
    let train_names: Vec<&str> = config.train_splits.iter().map(String::as_str).collect();
    let train = pick(&train_names)?;
    let val = pick(&[config.val_split.as_str()])?;
    if train.is_empty() || train.unlabelled() > 0 {
        return Err(TrainError::InvalidOption(format!("the training splits {train_names:?} need labelled faces")));
    }
    Ok((train, val))
}

/// Starts a new run in `run_dir` (which must not hold a checkpoint yet).
pub fn train(
    run_dir: &Path,
    config: &RunConfig,
    data: &Dataset,
    device: &Device,
    options: TrainOptions<'_>,
) -> Result<TrainOutcome, TrainError> {
    config.recipe.validate()?;
    let model_config = config.model.with_dropout_scaled(config.recipe.dropout_scale);
    model_config.validate()?;
    if config.recipe.whiten_first_layer && !matches!(model_config, fer_model::ModelConfig::Cnn(_)) {
        return Err(TrainError::InvalidOption("--whiten-first-layer needs a CNN: the DNN has no convolution".into()));
    }
    if checkpoint_path(run_dir).exists() {
        return Err(TrainError::BadRun {
            path: run_dir.into(),
            reason: "it already holds a run; continue it with --resume, or choose a new --out".into(),
        });
    }
    let (train_set, val_set) = splits(config, data)?;
    let _lock = RunLock::acquire(run_dir)?;
    if checkpoint_path(run_dir).exists() {
        return Err(TrainError::BadRun {
            path: run_dir.into(),
            reason: "another process started a run in it just now".into(),
        });
    }
    write_json(&RunConfig::path(run_dir), config)?;
    let ad = device.clone().autodiff();
    ad.seed(mix(config.recipe.seed, 0, 0, 0));
    // The checkpoint keeps this config, so a resumed run trains with the same rates.
    let model = FerModel::new(&model_config, &ad)?;
    let model = if config.recipe.whiten_first_layer { whiten_first_conv(model, &train_set)? } else { model };
    let data = Some(DataFingerprint::of(&train_set, &val_set));
    let state = TrainState { lr: config.recipe.lr, data, ..TrainState::default() };
    let ema = config.recipe.ema_decay.map(|d| Ema::new(d, &model));
    let trainer = TrainStep::with_optimizer(&config.recipe, optimizer(&config.recipe), &ad);
    run_loop(Run { run_dir, config, train_set, val_set, device, model, trainer, state, ema }, options)
}

/// Continues a run from its last checkpoint.
pub fn resume(
    run_dir: &Path,
    data: &Dataset,
    device: &Device,
    options: TrainOptions<'_>,
) -> Result<TrainOutcome, TrainError> {
    let config = read_run_config(run_dir)?;
    let (train_set, val_set) = splits(&config, data)?;
    let _lock = RunLock::acquire(run_dir)?;
    let ad = device.clone().autodiff();
    let mut checkpoint = load_checkpoint(run_dir, &ad)?;
    let now = DataFingerprint::of(&train_set, &val_set);
    match checkpoint.state.data {
        Some(then) => {
            if let Some(reason) = then.differs(&now) {
                return Err(TrainError::DataChanged { path: run_dir.into(), reason });
            }
        }
        // Runs from before fingerprints: adopt the data given now.
        None => checkpoint.state.data = Some(now),
    }
    let optim = restore_optimizer(optimizer(&config.recipe), checkpoint.optimizer, &checkpoint_path(run_dir))?;
    write_history(run_dir, &checkpoint.state.history)?;
    let ema = match (config.recipe.ema_decay, checkpoint.ema) {
        (Some(_), Some(ema)) => Some(ema),
        (Some(d), None) => Some(Ema::new(d, &checkpoint.model)),
        (None, _) => None,
    };
    let trainer = TrainStep::with_optimizer(&config.recipe, optim, &ad);
    let run = Run {
        run_dir,
        config: &config,
        train_set,
        val_set,
        device,
        model: checkpoint.model,
        trainer,
        state: checkpoint.state,
        ema,
    };
    run_loop(run, options)
}
