//! Sizing a scheduled run to a wall-clock budget. A one-cycle (or cosine) rate only ends annealed
//! when the run reaches its last step, so stopping a run at the budget leaves it mid-cycle with
//! the rate still high. Instead, before the run starts, a few steps of a throwaway copy of the
//! model measure this machine's step time, one validation pass on a slice of the validation faces
//! measures its cost, and the run's step count is fixed to fill the budget. The count goes into
//! the run's `config.json` like any other, so `--resume` and a rerun by count (`--epochs`,
//! `--steps-per-epoch`) compute exactly the same run: the probe touches neither the run's model
//! nor any of its random draws (each is a function of seed, epoch and step).

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::Device;
use fer_data::Dataset;
use fer_model::FerModel;

use crate::batches::{BatchPlan, batch_to_tensors, make_batch};
use crate::recipe::BudgetPlan;
use crate::train::start::splits;
use crate::train::step::TrainStep;
use crate::{RunConfig, TrainError, evaluate};

/// The fraction of the time left after the probe that the plan fills; the rest absorbs noise
/// (checkpoint writes, a busier machine) so the run ends inside its budget.
const FILL: f64 = 0.95;
/// Steps run before timing starts (first-touch allocation, weight packing).
const WARMUP_STEPS: usize = 2;
/// At most this many timed steps, and at least one.
const MAX_TIMED_STEPS: usize = 10;
/// The probe stops timing once it has used this fraction of the budget.
const PROBE_SHARE: f64 = 0.03;
/// Validation time is measured on this many faces and scaled to the whole split.
const EVAL_SAMPLE: usize = 512;

/// Whether a recipe's schedule needs to reach its last step to end annealed, so a budget should
/// size the run rather than only stop it.
pub fn budget_sizes(config: &RunConfig) -> bool {
    matches!(config.recipe.schedule, crate::Schedule::OneCycle { .. } | crate::Schedule::Cosine { .. })
}

/// The step count that fills `budget` at the measured costs: whole epochs of the recipe's steps
/// when at least one fits, else one shorter epoch. `None` when not even one step and one
/// validation fit.
pub fn plan_steps(budget: f64, step_seconds: f64, eval_seconds: f64, steps_per_epoch: usize) -> Option<(usize, usize)> {
    let epoch_seconds = steps_per_epoch as f64 * step_seconds + eval_seconds;
    let epochs = (budget / epoch_seconds).floor();
    if epochs >= 1.0 {
        return Some((epochs as usize, steps_per_epoch));
    }
    let steps = ((budget - eval_seconds) / step_seconds).floor();
    (steps >= 1.0).then_some((1, steps as usize))
}

/// Measures this machine and returns `config` with its epochs and steps per epoch fixed to fill
/// `budget`, and the plan behind them.
pub fn size_to_budget(
    config: &RunConfig,
    data: &Dataset,
    device: &Device,
    budget: Duration,
) -> Result<(RunConfig, BudgetPlan), TrainError> {
    let started = Instant::now();
    let recipe = &config.recipe;
    recipe.validate()?;
    let (train_set, val_set) = splits(config, data)?;
    let model_config = config.model.with_dropout_scaled(recipe.dropout_scale);
    let _precision = crate::train::step::PrecisionGuard::set(recipe.precision);
    let ad = device.clone().autodiff();
    let mut model = FerModel::new(&model_config, &ad)?;
    let mut trainer = TrainStep::new(recipe, &ad);
    let plan = BatchPlan::new(train_set.len(), recipe.batch_size, recipe.steps_per_epoch, recipe.seed);
    let order = plan.epoch_order(0);
    let mut timed = Vec::new();
    for step in 0..WARMUP_STEPS + MAX_TIMED_STEPS {
        let indices = plan.step_indices(&order, step % plan.steps());
        let batch = make_batch(&train_set, indices, &recipe.augment, recipe.seed, 0, step, None);
        let step_start = Instant::now();
        let (images, targets) = batch_to_tensors(batch, &ad);
        model = trainer.run(model, images, targets, recipe.lr * 1e-3).0;
        if step >= WARMUP_STEPS {
            timed.push(step_start.elapsed().as_secs_f64());
            if started.elapsed().as_secs_f64() >= PROBE_SHARE * budget.as_secs_f64() {
                break;
            }
        }
    }
    // The median step: one slow step (another process waking) does not size the whole run.
    timed.sort_by(f64::total_cmp);
    let step_seconds = timed[timed.len() / 2];
    let sample: Vec<usize> = (0..val_set.len().min(EVAL_SAMPLE)).collect();
    let eval_start = Instant::now();
    let _ = evaluate(&[model.valid()], &val_set.subset(&sample), device);
    let weight_sets = if recipe.ema_decay.is_some() { 2.0 } else { 1.0 };
    let eval_seconds =
        eval_start.elapsed().as_secs_f64() * weight_sets * val_set.len() as f64 / sample.len().max(1) as f64;
    let probe_seconds = started.elapsed().as_secs_f64();
    let left = (budget.as_secs_f64() - probe_seconds) * FILL;
    let (epochs, steps_per_epoch) = plan_steps(left, step_seconds, eval_seconds, plan.steps()).ok_or_else(|| {
        TrainError::InvalidOption(format!(
            "--time-budget {:.0}s is too short for this run: one step takes {step_seconds:.2}s and one validation \
                {eval_seconds:.1}s here",
            budget.as_secs_f64()
        ))
    })?;
    let mut sized = config.clone();
    sized.recipe.epochs = epochs;
    // A recipe of whole passes keeps them when whole epochs fit (its batches differ from a plan of
    // fixed steps).
    if steps_per_epoch != plan.steps() || recipe.steps_per_epoch.is_some() {
        sized.recipe.steps_per_epoch = Some(steps_per_epoch);
    }
    let plan = BudgetPlan {
        budget_seconds: budget.as_secs_f64(),
        probe_seconds,
        step_seconds,
        eval_seconds,
        epochs,
        steps_per_epoch,
    };
    sized.sized_to_budget = Some(plan.clone());
    Ok((sized, plan))
}
