//! What the training tests share: small synthetic data and a tiny CNN recipe.

use std::path::Path;

use burn::tensor::Device;
use fer_data::augment::AugmentConfig;
use fer_train::{RunConfig, TrainError, TrainOptions, TrainOutcome, train};

pub fn data() -> fer_data::Dataset {
    fer_data::synth::default_dataset(40, 10, 21)
}

pub fn tiny(epochs: usize) -> RunConfig {
    let mut c = RunConfig::new("synthetic:40,10,21", RunConfig::tiny_cnn());
    c.recipe.epochs = epochs;
    c.recipe.batch_size = 32;
    c.recipe.steps_per_epoch = None;
    c.recipe.augment = AugmentConfig { rotation_range: 5.0, ..AugmentConfig::none() };
    c.recipe.seed = 7;
    c
}

pub fn run(dir: &Path, config: &RunConfig, max_steps: Option<usize>) -> Result<TrainOutcome, TrainError> {
    train(
        dir,
        config,
        &data(),
        &Device::flex(),
        TrainOptions { time_budget: None, stop: None, max_steps, observer: &mut () },
    )
}
