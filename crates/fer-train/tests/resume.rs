//! Exact resume. In a test binary of its own: burn's random generator (dropout masks) is
//! global to the process, so a training run on another test thread would draw from it between
//! our seeded steps.

mod common;

use burn::tensor::Device;
use common::{data, run, tiny};
use fer_train::{StopReason, TrainOptions, resume};

fn numbers(state: &fer_train::TrainState) -> Vec<(f64, f64, f64, f64, f64)> {
    state.history.iter().map(|r| (r.train_loss, r.train_acc, r.val_loss, r.val_acc, r.lr)).collect()
}

#[test]
fn an_interrupted_and_resumed_run_matches_an_uninterrupted_one() {
    let whole = tempfile::tempdir().unwrap();
    let uninterrupted = run(whole.path(), &tiny(3), None).unwrap();

    let parts = tempfile::tempdir().unwrap();
    // 9 steps per epoch: stop mid-epoch 1, then at an epoch boundary, then finish.
    let first = run(parts.path(), &tiny(3), Some(5)).unwrap();
    assert_eq!(first.stop, StopReason::StepLimit);
    let opts = |max_steps| TrainOptions { time_budget: None, stop: None, max_steps, observer: Box::leak(Box::new(())) };
    let device = Device::flex();
    let second = resume(parts.path(), &data(), &device, opts(Some(4))).unwrap();
    assert_eq!((second.state.epoch, second.state.step), (1, 0));
    let last = resume(parts.path(), &data(), &device, opts(None)).unwrap();
    assert_eq!(last.stop, StopReason::Finished);
    assert_eq!(numbers(&last.state), numbers(&uninterrupted.state));
}

