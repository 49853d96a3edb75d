//! Exact resume. In a test binary of its own: burn's random generator (dropout masks) is
//! global to the process, so a training run on another test thread would draw from it between
//! our seeded steps.

use std::path::Path;

use burn::tensor::Device;
use fer_data::augment::AugmentConfig;
use fer_train::{RunConfig, StopReason, TrainError, TrainOptions, TrainOutcome, resume, train};

fn data() -> fer_data::Dataset {
    fer_data::synth::default_dataset(40, 10, 21)
}

fn tiny(epochs: usize) -> RunConfig {
    let mut c = RunConfig::new("synthetic:", RunConfig::tiny_cnn());
    c.recipe.epochs = epochs;
    c.recipe.batch_size = 32;
    c.recipe.steps_per_epoch = None;
    c.recipe.augment = AugmentConfig { rotation_range: 5.0, ..AugmentConfig::none() };
    c.recipe.seed = 7;
    c
}

fn run(dir: &Path, config: &RunConfig, max_steps: Option<usize>) -> Result<TrainOutcome, TrainError> {
    train(dir, config, &data(), &Device::flex(), TrainOptions { time_budget: None, stop: None, max_steps, observer: &mut () })
}

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

