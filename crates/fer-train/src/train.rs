use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};
use fer_data::Dataset;
use fer_model::FerModel;
use serde::{Deserialize, Serialize};

use crate::batches::{BatchPlan, batch_to_tensors, mix, prefetch};
use crate::checkpoint::{DataFingerprint, TrainState, checkpoint_path, load_checkpoint, restore_optimizer, save_checkpoint};
use crate::ema::Ema;
use crate::optim::optimizer;
use crate::runlock::RunLock;
use crate::{Evaluation, Recipe, RunConfig, Schedule, TrainError, evaluate};

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

/// Progress of one training step, for progress bars and logs.
#[derive(Clone, Debug)]
pub struct StepInfo {
    pub epoch: usize,
    pub epochs: usize,
    pub step: usize,
    pub steps: usize,
    /// Mean training loss and accuracy over the epoch so far.
    pub loss: f64,
    pub acc: f64,
    pub images_per_s: f64,
}

/// Receives progress; every method has a do-nothing default.
pub trait Observer {
    fn on_epoch_start(&mut self, _epoch: usize, _epochs: usize, _steps: usize, _start_step: usize) {}
    fn on_step(&mut self, _info: &StepInfo) {}
    fn on_epoch(&mut self, _row: &EpochRow) {}
    fn on_message(&mut self, _message: &str) {}
}

impl Observer for () {}

/// When to stop early, besides finishing.
pub struct TrainOptions<'a> {
    /// Wall-clock budget for this invocation: the current step finishes, then the run
    /// validates, checkpoints and stops.
    pub time_budget: Option<Duration>,
    /// Set by a Ctrl-C handler: stops the same clean way.
    pub stop: Option<&'a AtomicBool>,
    /// Stop after this many steps in this invocation (for tests of interruption).
    pub max_steps: Option<usize>,
    pub observer: &'a mut dyn Observer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum StopReason {
    Finished,
    TimeBudget,
    Interrupted,
    StepLimit,
}

#[derive(Debug)]
pub struct TrainOutcome {
    pub state: TrainState,
    pub stop: StopReason,
}

/// Reads a checkpoint's optimizer state as `--resume` would, for a run trained with `recipe`.
/// (Resume does this itself; this is for checking a checkpoint without training, e.g. fuzzing.)
pub fn check_optimizer_state(recipe: &Recipe, bytes: Vec<u8>, path: &Path) -> Result<(), TrainError> {
    restore_optimizer(optimizer(recipe), bytes, path).map(|_| ())
}

/// One optimisation step exactly as [`train`] runs it: forward, the recipe's loss, backward, the
/// recipe's optimizer at the given rate. `fer bench` times this same value, so the bench and a
/// run's history measure the same work.
pub struct TrainStep {
    optim: ModuleOptimizer,
    loss_fn: CrossEntropyLoss,
}

/// What a step returns besides the updated model: the batch's mean loss and correct predictions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutput {
    pub loss: f32,
    pub correct: i64,
}

impl TrainStep {
    /// A fresh optimizer for `recipe`, on `device` (an autodiff device).
    pub fn new(recipe: &Recipe, device: &Device) -> Self {
        Self::with_optimizer(recipe, optimizer(recipe), device)
    }

    fn with_optimizer(recipe: &Recipe, optim: ModuleOptimizer, device: &Device) -> Self {
        TrainStep { optim, loss_fn: loss_function(recipe, device) }
    }

    /// Runs the step; a non-finite loss leaves the model unchanged and is returned as is, for the
    /// caller to stop on.
    pub fn run(&mut self, model: FerModel, images: Tensor<4>, targets: Tensor<1, Int>, lr: f64) -> (FerModel, StepOutput) {
        let logits = model.forward(images);
        let loss = self.loss_fn.forward(logits.clone(), targets.clone());
        let loss_value = loss.clone().into_scalar::<f32>();
        if !loss_value.is_finite() {
            return (model, StepOutput { loss: loss_value, correct: 0 });
        }
        let correct = logits.argmax(1).squeeze_dim::<1>(1).equal(targets).int().sum().into_scalar::<i64>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        (self.optim.step(lr, model, grads), StepOutput { loss: loss_value, correct })
    }
}

/// The recipe's training loss: cross-entropy on logits, with label smoothing when asked.
pub fn loss_function(recipe: &Recipe, device: &Device) -> CrossEntropyLoss {
    let smoothing = (recipe.label_smoothing > 0.0).then_some(recipe.label_smoothing);
    CrossEntropyLossConfig::new().with_smoothing(smoothing).init(device)
}

pub(crate) fn splits(config: &RunConfig, data: &Dataset) -> Result<(Dataset, Dataset), TrainError> {
    let pick = |names: &[&str]| {
        data.select_splits(names).map_err(|available| TrainError::MissingSplit { wanted: names.join(","), available: available.join(", ") })
    };
    let train_names: Vec<&str> = config.train_splits.iter().map(String::as_str).collect();
    let train = pick(&train_names)?;
    let val = pick(&[config.val_split.as_str()])?;
    if train.is_empty() || train.unlabelled() > 0 {
        return Err(TrainError::InvalidOption(format!("the training splits {train_names:?} need labelled faces")));
    }
    Ok((train, val))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| TrainError::InvalidOption(e.to_string()))?;
    fer_model::write_atomic(path, &text).map_err(|e| TrainError::io(path, e))
}

fn write_history(run_dir: &Path, rows: &[EpochRow]) -> Result<(), TrainError> {
    let with_ema = rows.iter().any(|r| r.ema_val_acc.is_some());
    let mut csv = String::from("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds,images_per_s,eval_seconds,wall_seconds");
    csv.push_str(if with_ema { ",ema_val_loss,ema_val_acc\n" } else { "\n" });
    for r in rows {
        csv.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:e},{:.3},{:.2},{:.3},{:.3}",
            r.epoch, r.train_loss, r.train_acc, r.val_loss, r.val_acc, r.lr, r.seconds, r.images_per_s, r.eval_seconds, r.wall_seconds
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

/// Starts a new run in `run_dir` (which must not hold a checkpoint yet).
pub fn train(run_dir: &Path, config: &RunConfig, data: &Dataset, device: &Device, options: TrainOptions<'_>) -> Result<TrainOutcome, TrainError> {
    config.recipe.validate()?;
    let model_config = config.model.with_dropout_scaled(config.recipe.dropout_scale);
    model_config.validate()?;
    if checkpoint_path(run_dir).exists() {
        return Err(TrainError::BadRun {
            path: run_dir.into(),
            reason: "it already holds a run; continue it with --resume, or choose a new --out".into(),
        });
    }
    let (train_set, val_set) = splits(config, data)?;
    let _lock = RunLock::acquire(run_dir)?;
    if checkpoint_path(run_dir).exists() {
        return Err(TrainError::BadRun { path: run_dir.into(), reason: "another process started a run in it just now".into() });
    }
    write_json(&RunConfig::path(run_dir), config)?;
    let ad = device.clone().autodiff();
    ad.seed(mix(config.recipe.seed, 0, 0, 0));
    // The checkpoint keeps this config, so a resumed run trains with the same rates.
    let model = FerModel::new(&model_config, &ad)?;
    let data = Some(DataFingerprint::of(&train_set, &val_set));
    let state = TrainState { lr: config.recipe.lr, data, ..TrainState::default() };
    let ema = config.recipe.ema_decay.map(|d| Ema::new(d, &model));
    run_loop(run_dir, config, train_set, val_set, device, model, optimizer(&config.recipe), state, ema, options)
}

/// Reads a run folder's config.
pub fn read_run_config(run_dir: &Path) -> Result<RunConfig, TrainError> {
    let path = RunConfig::path(run_dir);
    let text =
        std::fs::read(&path).map_err(|e| TrainError::BadRun { path: run_dir.into(), reason: format!("cannot read {}: {e}", path.display()) })?;
    serde_json::from_slice(&text).map_err(|e| TrainError::BadRun { path: path.clone(), reason: e.to_string() })
}

/// Continues a run from its last checkpoint.
pub fn resume(run_dir: &Path, data: &Dataset, device: &Device, options: TrainOptions<'_>) -> Result<TrainOutcome, TrainError> {
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
    run_loop(run_dir, &config, train_set, val_set, device, checkpoint.model, optim, checkpoint.state, ema, options)
}

fn next_lr(schedule: &Schedule, base: f64, state: &mut TrainState, epochs: usize, val_loss: f64) -> f64 {
    match schedule {
        Schedule::Constant => base,
        Schedule::OneCycle { .. } => state.lr,
        Schedule::Cosine { min_factor } => {
            let t = (state.epoch + 1) as f64 / epochs.max(1) as f64;
            base * (min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos()))
        }
        Schedule::ReduceOnPlateau { factor, patience, min_lr } => {
            if state.plateau_best_loss.is_none_or(|best| val_loss < best) {
                state.plateau_best_loss = Some(val_loss);
                state.plateau_bad_epochs = 0;
                state.lr
            } else {
                state.plateau_bad_epochs += 1;
                if state.plateau_bad_epochs > *patience {
                    state.plateau_bad_epochs = 0;
                    (state.lr * factor).max(*min_lr)
                } else {
                    state.lr
                }
            }
        }
    }
}

/// The recipe's convolution precision for the length of a run (training and its validation),
/// the process's earlier setting restored afterwards, however the run ends.
pub(crate) struct PrecisionGuard(fer_kernels::Precision);

impl PrecisionGuard {
    pub(crate) fn set(precision: fer_kernels::Precision) -> PrecisionGuard {
        let before = fer_kernels::precision();
        fer_kernels::set_precision(precision);
        PrecisionGuard(before)
    }
}

impl Drop for PrecisionGuard {
    fn drop(&mut self) {
        fer_kernels::set_precision(self.0);
    }
}

#[allow(clippy::too_many_arguments)]
fn run_loop(
    run_dir: &Path,
    config: &RunConfig,
    train_set: Dataset,
    val_set: Dataset,
    device: &Device,
    mut model: FerModel,
    optim: ModuleOptimizer,
    mut state: TrainState,
    mut ema: Option<Ema>,
    options: TrainOptions<'_>,
) -> Result<TrainOutcome, TrainError> {
    let recipe = &config.recipe;
    let _precision = PrecisionGuard::set(recipe.precision.into());
    let ad = device.clone().autodiff();
    let train_set = Arc::new(train_set);
    let plan = BatchPlan::new(train_set.len(), recipe.batch_size, recipe.steps_per_epoch, recipe.seed);
    let total_steps = plan.steps() * recipe.epochs;
    let started = Instant::now();
    let wall_at_start = state.wall_seconds;
    let mut steps_run = 0usize;
    let observer = options.observer;
    let should_stop = |steps_run: usize| -> Option<StopReason> {
        if options.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            Some(StopReason::Interrupted)
        } else if options.time_budget.is_some_and(|b| started.elapsed() >= b) {
            Some(StopReason::TimeBudget)
        } else if options.max_steps.is_some_and(|m| steps_run >= m) {
            Some(StopReason::StepLimit)
        } else {
            None
        }
    };
    let mut trainer = TrainStep::with_optimizer(recipe, optim, &ad);

    while state.epoch < recipe.epochs && !state.finished {
        let epoch = state.epoch;
        observer.on_epoch_start(epoch, recipe.epochs, plan.steps(), state.step);
        let batches = prefetch(train_set.clone(), plan.clone(), recipe.augment.clone(), recipe.seed, epoch, state.step);
        for step in state.step..plan.steps() {
            let step_start = Instant::now();
            if recipe.schedule.is_per_step() {
                state.lr = recipe.schedule.lr_at_step(recipe.lr, epoch * plan.steps() + step, total_steps);
            }
            let batch = batches.recv().map_err(|_| TrainError::InvalidOption("the batch preparation thread stopped".into()))?;
            let n = batch.len();
            ad.seed(mix(recipe.seed, 3, epoch as u64, step as u64));
            let (images, targets) = batch_to_tensors(batch, &ad);
            let (updated, StepOutput { loss: loss_value, correct }) = trainer.run(model, images, targets, state.lr);
            model = updated;
            if !loss_value.is_finite() {
                return Err(TrainError::NonFiniteLoss { epoch: epoch + 1, step: step + 1, loss: loss_value, run: run_dir.into() });
            }
            if let Some(ema) = &mut ema {
                ema.update(&model);
            }

            state.loss_sum += loss_value as f64 * n as f64;
            state.correct += correct as u64;
            state.seen += n as u64;
            state.seconds += step_start.elapsed().as_secs_f64();
            state.step = step + 1;
            steps_run += 1;
            observer.on_step(&StepInfo {
                epoch,
                epochs: recipe.epochs,
                step: step + 1,
                steps: plan.steps(),
                loss: state.loss_sum / state.seen as f64,
                acc: state.correct as f64 / state.seen as f64,
                images_per_s: state.seen as f64 / state.seconds.max(1e-9),
            });
            if state.step < plan.steps()
                && let Some(reason) = should_stop(steps_run)
            {
                let eval = evaluate(&[model.valid()], &val_set, device);
                observer.on_message(&format!(
                    "stopping mid-epoch ({reason:?}) at epoch {}, step {}/{}: val_loss {:.4}, val_acc {:.4}; resume with --resume",
                    epoch + 1,
                    state.step,
                    plan.steps(),
                    eval.loss,
                    eval.accuracy
                ));
                state.wall_seconds = wall_at_start + started.elapsed().as_secs_f64();
                save_checkpoint(run_dir, &state, &model, &trainer.optim, ema.as_ref())?;
                return Ok(TrainOutcome { state, stop: reason });
            }
        }
        drop(batches);

        let eval_start = Instant::now();
        let valid = model.valid();
        let eval: Evaluation = evaluate(std::slice::from_ref(&valid), &val_set, device);
        let ema_model = ema.as_ref().map(|e| e.apply(model.valid()));
        let ema_eval = ema_model.as_ref().map(|m| evaluate(std::slice::from_ref(m), &val_set, device));
        let eval_seconds = eval_start.elapsed().as_secs_f64();
        let row = EpochRow {
            epoch: epoch + 1,
            train_loss: state.loss_sum / state.seen.max(1) as f64,
            train_acc: state.correct as f64 / state.seen.max(1) as f64,
            val_loss: eval.loss,
            val_acc: eval.accuracy,
            lr: state.lr,
            seconds: state.seconds,
            images_per_s: state.seen as f64 / state.seconds.max(1e-9),
            eval_seconds,
            wall_seconds: wall_at_start + started.elapsed().as_secs_f64(),
            ema_val_loss: ema_eval.as_ref().map(|e| e.loss),
            ema_val_acc: ema_eval.as_ref().map(|e| e.accuracy),
        };
        if state.best_val_acc.is_none_or(|best| eval.accuracy > best) {
            state.best_val_acc = Some(eval.accuracy);
            state.best_epoch = Some(epoch + 1);
            fer_model::save_model(&valid, &run_dir.join("best.fer"))?;
            write_json(&run_dir.join("best.json"), &serde_json::json!({"epoch": epoch + 1, "val_acc": eval.accuracy, "val_loss": eval.loss}))?;
        }
        if let (Some(m), Some(e)) = (&ema_model, &ema_eval)
            && state.best_ema_val_acc.is_none_or(|best| e.accuracy > best)
        {
            state.best_ema_val_acc = Some(e.accuracy);
            fer_model::save_model(m, &run_dir.join("best-ema.fer"))?;
            write_json(&run_dir.join("best-ema.json"), &serde_json::json!({"epoch": epoch + 1, "val_acc": e.accuracy, "val_loss": e.loss}))?;
        }
        state.history.push(row.clone());
        if !recipe.schedule.is_per_step() {
            state.lr = next_lr(&recipe.schedule, recipe.lr, &mut state, recipe.epochs, eval.loss);
        }
        state.epoch += 1;
        state.step = 0;
        state.loss_sum = 0.0;
        state.correct = 0;
        state.seen = 0;
        state.seconds = 0.0;
        state.finished = state.epoch >= recipe.epochs;
        state.wall_seconds = row.wall_seconds;
        save_checkpoint(run_dir, &state, &model, &trainer.optim, ema.as_ref())?;
        write_history(run_dir, &state.history)?;
        observer.on_epoch(&row);
        if !state.finished
            && let Some(reason) = should_stop(steps_run)
        {
            observer.on_message(&format!("stopped after epoch {} ({reason:?}); resume with --resume", epoch + 1));
            return Ok(TrainOutcome { state, stop: reason });
        }
    }
    state.finished = true;
    Ok(TrainOutcome { state, stop: StopReason::Finished })
}

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
        let opts = TrainOptions { time_budget: remaining, stop: options.stop, max_steps: options.max_steps, observer: &mut *options.observer };
        let outcome = if checkpoint_path(&dir).exists() { resume(&dir, data, device, opts)? } else { train(&dir, &member, data, device, opts)? };
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
