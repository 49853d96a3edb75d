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

/// The tiny CNN as the two variants of `fer train --model` build it: on the centre 44x44 of each
/// face (`cnn-crop44`) with a second convolution in blocks 4 and 5 (`cnn-double`).
#[allow(dead_code)] // each test binary compiles this module; not all of them use the variants
pub fn tiny_variant(epochs: usize) -> RunConfig {
    let mut c = tiny(epochs);
    let fer_model::ModelConfig::Cnn(cnn) = RunConfig::tiny_cnn() else { unreachable!("tiny_cnn is a cnn") };
    c.model = fer_model::ModelConfig::Cnn(
        cnn.with_input_side(fer_model::CROP_SIDE).with_second_conv(vec![false, false, false, true, true]),
    );
    c
}
