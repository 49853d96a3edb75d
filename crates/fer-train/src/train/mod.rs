//! Training runs, one file per job:
//!
//! | file | job |
//! |---|---|
//! | `step.rs` | one optimisation step ([`TrainStep`], also what `fer bench` times) and the run's precision |
//! | `start.rs` | starting a run ([`train`]) and continuing one ([`resume`]) |
//! | `run_loop.rs` | the loop: steps, schedule, weight average, validation, checkpoints, early stops |
//! | `ensemble.rs` | several seeds under one folder, and which saved weights to use |
//! | `observer.rs` | progress out ([`Observer`]), stop conditions in ([`TrainOptions`]), the outcome |

pub(crate) mod ensemble;
pub(crate) mod observer;
mod run_loop;
pub(crate) mod start;
pub(crate) mod step;

pub use ensemble::{Weights, ensemble_members, train_ensemble};
pub use observer::{Observer, StepInfo, StopReason, TrainOptions, TrainOutcome};
pub use start::{check_optimizer_state, resume, train};
pub use step::{StepOutput, TrainStep, loss_function};
