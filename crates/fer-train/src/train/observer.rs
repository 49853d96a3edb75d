//! What a caller sees of a run and how it steers it: progress for bars and logs ([`Observer`]),
//! when to stop early ([`TrainOptions`]), and how a run ended ([`TrainOutcome`]).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::Serialize;

use crate::checkpoint::TrainState;
use crate::run_files::EpochRow;

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
