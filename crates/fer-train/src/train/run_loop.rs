//! The training loop: epochs of steps on prefetched batches, the rate schedule, the weight
//! average, validation and checkpoints after each epoch, and clean early stops (a budget, Ctrl-C,
//! a step limit) that checkpoint first, so `--resume` continues exactly where the run stopped.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use fer_data::Dataset;
use fer_model::FerModel;

use super::observer::{StepInfo, StopReason, TrainOptions, TrainOutcome};
use super::step::{PrecisionGuard, StepOutput, TrainStep};
use crate::batches::{BatchPlan, batch_to_tensors, mix, prefetch};
use crate::checkpoint::{TrainState, save_checkpoint};
use crate::ema::Ema;
use crate::error::TrainError;
use crate::eval::{Evaluation, evaluate};
use crate::lookahead::Lookahead;
use crate::recipe::{RunConfig, Schedule};
use crate::run_files::{EpochRow, write_history, write_json};

/// A run ready to train: its folder, config and data, and the model, optimizer, position and
/// weight average it starts from (fresh, or restored by `--resume`).
pub(super) struct Run<'a> {
    pub run_dir: &'a Path,
    pub config: &'a RunConfig,
    pub train_set: Dataset,
    pub val_set: Dataset,
    pub device: &'a Device,
    pub model: FerModel,
    pub trainer: TrainStep,
    pub state: TrainState,
    pub ema: Option<Ema>,
}

/// Trains `run` to the end of its recipe or until `options` stop it.
pub(super) fn run_loop(run: Run, options: TrainOptions<'_>) -> Result<TrainOutcome, TrainError> {
    let _precision = PrecisionGuard::set(run.config.recipe.precision);
    let recipe = &run.config.recipe;
    let plan = BatchPlan::new(run.train_set.len(), recipe.batch_size, recipe.steps_per_epoch, recipe.seed);
    let mut training = Training {
        ad: run.device.clone().autodiff(),
        total_steps: plan.steps() * recipe.epochs,
        plan,
        train_set: Arc::new(run.train_set),
        started: Instant::now(),
        wall_at_start: run.state.wall_seconds,
        steps_run: 0,
        run_dir: run.run_dir,
        config: run.config,
        val_set: run.val_set,
        device: run.device,
        trainer: run.trainer,
        ema: run.ema,
        lookahead: recipe.lookahead.then(|| Lookahead::new(&run.model)),
        options,
    };
    let (mut model, mut state) = (run.model, run.state);
    while state.epoch < recipe.epochs && !state.finished {
        let epoch = state.epoch;
        let (trained, stopped) = training.train_epoch(model, &mut state)?;
        model = trained;
        if let Some(reason) = stopped {
            return Ok(TrainOutcome { state, stop: reason });
        }
        let row = training.end_epoch(&model, &mut state)?;
        training.options.observer.on_epoch(&row);
        if !state.finished
            && let Some(reason) = training.should_stop()
        {
            training
                .options
                .observer
                .on_message(&format!("stopped after epoch {} ({reason:?}); resume with --resume", epoch + 1));
            return Ok(TrainOutcome { state, stop: reason });
        }
    }
    state.finished = true;
    Ok(TrainOutcome { state, stop: StopReason::Finished })
}

/// What the loop holds from the first step to the last of one invocation.
struct Training<'a, 'o> {
    run_dir: &'a Path,
    config: &'a RunConfig,
    train_set: Arc<Dataset>,
    val_set: Dataset,
    device: &'a Device,
    ad: Device,
    plan: BatchPlan,
    total_steps: usize,
    trainer: TrainStep,
    ema: Option<Ema>,
    lookahead: Option<Lookahead>,
    options: TrainOptions<'o>,
    /// This invocation's clock, and the run's wall-clock seconds before it (across resumes).
    started: Instant,
    wall_at_start: f64,
    steps_run: usize,
}

impl Training<'_, '_> {
    /// Why to stop now, if the options say so.
    fn should_stop(&self) -> Option<StopReason> {
        let options = &self.options;
        if options.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            Some(StopReason::Interrupted)
        } else if options.time_budget.is_some_and(|b| self.started.elapsed() >= b) {
            Some(StopReason::TimeBudget)
        } else if options.max_steps.is_some_and(|m| self.steps_run >= m) {
            Some(StopReason::StepLimit)
        } else {
            None
        }
    }

    fn wall_seconds(&self) -> f64 {
        self.wall_at_start + self.started.elapsed().as_secs_f64()
    }

    /// The rest of the current epoch's steps; stops mid-epoch (validated and checkpointed) where
    /// [`Training::should_stop`] says so, and returns why.
    fn train_epoch(
        &mut self,
        mut model: FerModel,
        state: &mut TrainState,
    ) -> Result<(FerModel, Option<StopReason>), TrainError> {
        let config = self.config;
        let (recipe, steps, epoch) = (&config.recipe, self.plan.steps(), state.epoch);
        self.options.observer.on_epoch_start(epoch, recipe.epochs, steps, state.step);
        let batches = prefetch(
            self.train_set.clone(),
            self.plan.clone(),
            recipe.augment.clone(),
            recipe.seed,
            epoch,
            state.step,
            recipe.first_plain_step(self.total_steps),
        );
        for step in state.step..steps {
            let step_start = Instant::now();
            if recipe.schedule.is_per_step() {
                state.lr = recipe.schedule.lr_at_step(recipe.lr, epoch * steps + step, self.total_steps);
            }
            let batch =
                batches.recv().map_err(|_| TrainError::InvalidOption("the batch preparation thread stopped".into()))?;
            let n = batch.len();
            self.ad.seed(mix(recipe.seed, 3, epoch as u64, step as u64));
            let (images, targets) = batch_to_tensors(batch, &self.ad);
            let (updated, StepOutput { loss, correct }) = self.trainer.run(model, images, targets, state.lr);
            model = updated;
            if !loss.is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    epoch: epoch + 1,
                    step: step + 1,
                    loss,
                    run: self.run_dir.into(),
                });
            }
            let done = epoch * steps + step + 1;
            let folds = Lookahead::folds_after(done, step + 1, steps);
            if let Some(lookahead) = self.lookahead.as_mut().filter(|_| folds) {
                model = lookahead.fold(model, Lookahead::decay_at(done, self.total_steps));
            }
            // With lookahead, a run stops only where the model equals its average (see lookahead.rs).
            let may_stop = self.lookahead.is_none() || folds;
            if let Some(ema) = &mut self.ema {
                ema.update(&model);
            }
            state.loss_sum += loss as f64 * n as f64;
            state.correct += correct as u64;
            state.seen += n as u64;
            state.seconds += step_start.elapsed().as_secs_f64();
            state.step = step + 1;
            self.steps_run += 1;
            self.options.observer.on_step(&StepInfo {
                epoch,
                epochs: recipe.epochs,
                step: step + 1,
                steps,
                loss: state.loss_sum / state.seen as f64,
                acc: state.correct as f64 / state.seen as f64,
                images_per_s: state.seen as f64 / state.seconds.max(1e-9),
            });
            if state.step < steps
                && may_stop
                && let Some(reason) = self.should_stop()
            {
                self.stop_mid_epoch(&model, state, reason)?;
                return Ok((model, Some(reason)));
            }
        }
        Ok((model, None))
    }

    /// Validates, says where the run stopped, and checkpoints it mid-epoch.
    fn stop_mid_epoch(
        &mut self,
        model: &FerModel,
        state: &mut TrainState,
        reason: StopReason,
    ) -> Result<(), TrainError> {
        let eval = evaluate(&[model.valid()], &self.val_set, self.device);
        self.options.observer.on_message(&format!(
            "stopping mid-epoch ({reason:?}) at epoch {}, step {}/{}: val_loss {:.4}, val_acc {:.4}; resume with \
                --resume",
            state.epoch + 1,
            state.step,
            self.plan.steps(),
            eval.loss,
            eval.accuracy
        ));
        state.wall_seconds = self.wall_seconds();
        save_checkpoint(self.run_dir, state, model, &self.trainer.optim, self.ema.as_ref())
    }

    /// After an epoch's last step: validation (of the weight average too), the best weights so
    /// far, the next rate, the checkpoint and the history. Returns the epoch's row.
    fn end_epoch(&mut self, model: &FerModel, state: &mut TrainState) -> Result<EpochRow, TrainError> {
        let config = self.config;
        let (recipe, epoch, run_dir) = (&config.recipe, state.epoch, self.run_dir);
        let eval_start = Instant::now();
        let valid = model.valid();
        let eval: Evaluation = evaluate(std::slice::from_ref(&valid), &self.val_set, self.device);
        let ema_model = self.ema.as_ref().map(|e| e.apply(model.valid()));
        let ema_eval = ema_model.as_ref().map(|m| evaluate(std::slice::from_ref(m), &self.val_set, self.device));
        let row = EpochRow {
            epoch: epoch + 1,
            train_loss: state.loss_sum / state.seen.max(1) as f64,
            train_acc: state.correct as f64 / state.seen.max(1) as f64,
            val_loss: eval.loss,
            val_acc: eval.accuracy,
            lr: state.lr,
            seconds: state.seconds,
            images_per_s: state.seen as f64 / state.seconds.max(1e-9),
            eval_seconds: eval_start.elapsed().as_secs_f64(),
            wall_seconds: self.wall_seconds(),
            ema_val_loss: ema_eval.as_ref().map(|e| e.loss),
            ema_val_acc: ema_eval.as_ref().map(|e| e.accuracy),
        };
        if state.best_val_acc.is_none_or(|best| eval.accuracy > best) {
            state.best_val_acc = Some(eval.accuracy);
            state.best_epoch = Some(epoch + 1);
            fer_model::save_model(&valid, &run_dir.join("best.fer"))?;
            write_json(
                &run_dir.join("best.json"),
                &serde_json::json!({"epoch": epoch + 1, "val_acc": eval.accuracy, "val_loss": eval.loss}),
            )?;
        }
        if let (Some(m), Some(e)) = (&ema_model, &ema_eval)
            && state.best_ema_val_acc.is_none_or(|best| e.accuracy > best)
        {
            state.best_ema_val_acc = Some(e.accuracy);
            fer_model::save_model(m, &run_dir.join("best-ema.fer"))?;
            write_json(
                &run_dir.join("best-ema.json"),
                &serde_json::json!({"epoch": epoch + 1, "val_acc": e.accuracy, "val_loss": e.loss}),
            )?;
        }
        state.history.push(row.clone());
        if !recipe.schedule.is_per_step() {
            state.lr = next_lr(&recipe.schedule, recipe.lr, state, recipe.epochs, eval.loss);
        }
        state.epoch += 1;
        state.step = 0;
        state.loss_sum = 0.0;
        state.correct = 0;
        state.seen = 0;
        state.seconds = 0.0;
        state.finished = state.epoch >= recipe.epochs;
        state.wall_seconds = row.wall_seconds;
        save_checkpoint(run_dir, state, model, &self.trainer.optim, self.ema.as_ref())?;
        write_history(run_dir, &state.history)?;
        Ok(row)
    }
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
