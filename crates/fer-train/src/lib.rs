//! Training and evaluation of fer's models on any burn device.
//!
//! The report's recipe is the default ([`Recipe::report_cnn`]): Adam (lr 1e-3, β 0.9/0.999,
//! ε 1e-7 as in Keras), cross-entropy, batch 128, 500 steps per epoch of on-the-fly augmented
//! faces. A run lives in one folder: `config.json`, `history.csv`, `checkpoint.ckpt` (model,
//! optimizer, position, history; written atomically) and `best.fer`.
//!
//! Every random draw is a function of (seed, epoch, step): the batch order, the augmentation of
//! each face and the dropout masks. So a run that is stopped and resumed computes exactly what an
//! uninterrupted one computes.

mod batches;
mod budget;
mod checkpoint;
mod ema;
mod error;
mod eval;
mod lookahead;
pub mod frames;
mod optim;
mod param_groups;
mod recipe;
mod run_files;
mod runlock;
mod train;
pub mod whiten;

pub use batches::{Batch, BatchPlan, batch_to_tensors, make_batch};
pub use budget::{budget_sizes, plan_steps, size_to_budget};
pub use checkpoint::{Checkpoint, DataFingerprint, TrainState, checkpoint_from_bytes, load_checkpoint};
pub use ema::{Ema, flatten as flat_weights};
pub use error::TrainError;
pub use eval::{
    ClassMetrics, EvalChoice, Evaluation, RunEvaluation, Tta, argmax, evaluate, evaluate_models_to, evaluate_run,
    evaluate_run_to, evaluate_run_with, predict_probabilities, predict_probabilities_tta,
};
pub use lookahead::LOOKAHEAD_EVERY;
pub use param_groups::ParamGroups;
pub use recipe::{AdamParams, BudgetPlan, OptimizerKind, Precision, Recipe, RunConfig, Schedule, parse_duration};
pub use run_files::{EpochRow, read_run_config};
pub use runlock::RunLock;
pub use train::{
    Observer, StepInfo, StepOutput, StopReason, TrainOptions, TrainOutcome, TrainStep, Weights, check_optimizer_state,
    ensemble_members, loss_function, resume, train, train_ensemble,
};
