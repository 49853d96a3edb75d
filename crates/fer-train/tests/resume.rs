//! Exact resume. In a test binary of its own: burn's random generator (dropout masks) is
//! global to the process, so a training run on another test thread would draw from it between
//! our seeded steps.

mod common;

use burn::tensor::Device;
use common::{data, run, tiny, tiny_variant};
use fer_train::{StopReason, TrainOptions, resume};

type Numbers = (f64, f64, f64, f64, f64, Option<f64>, Option<f64>);

fn numbers(state: &fer_train::TrainState) -> Vec<Numbers> {
    state
        .history
        .iter()
        .map(|r| (r.train_loss, r.train_acc, r.val_loss, r.val_acc, r.lr, r.ema_val_loss, r.ema_val_acc))
        .collect()
}

/// The tiny run with everything the fast recipe adds: a per-step schedule, AdamW, label
/// smoothing and a weight average (which must resume exactly too).
fn tiny_fast(epochs: usize) -> fer_train::RunConfig {
    let mut c = tiny(epochs);
    let fast = fer_train::Recipe::fast_cnn();
    c.recipe.schedule = fast.schedule;
    c.recipe.weight_decay = fast.weight_decay;
    c.recipe.label_smoothing = fast.label_smoothing;
    // Scaled dropout: the resumed run must rebuild the model with the same rates.
    c.recipe.dropout_scale = fast.dropout_scale;
    c.recipe.ema_decay = Some(0.9);
    c
}

#[test]
fn an_interrupted_and_resumed_run_matches_an_uninterrupted_one() {
    // One test function, run one after the other: see the module comment.
    // bf16 convolutions (f32 where the CPU lacks AVX512-BF16) must resume bit for bit too.
    let bf16 = fer_train::RunConfig {
        recipe: fer_train::Recipe { precision: fer_train::Precision::Bf16, ..tiny_fast(3).recipe },
        ..tiny_fast(3)
    };
    // SGD's velocity must come back from the checkpoint as Adam's moments do.
    let sgd = fer_train::RunConfig { recipe: tiny_fast(3).recipe.with_sgd_nesterov(), ..tiny_fast(3) };
    // Lookahead keeps no state in the checkpoint: its average must be rebuilt exactly.
    let lookahead =
        fer_train::RunConfig { recipe: fer_train::Recipe { lookahead: true, ..tiny_fast(3).recipe }, ..tiny_fast(3) };
    // airbench's and Page's rules: alternating flips counted over passes, a fixed whitened
    // first layer (found again in the reloaded model), frozen scales, faster shifts.
    let mut rules = tiny_fast(3).recipe;
    rules.augment.horizontal_flip = true;
    rules.augment.alternate_flips = true;
    rules.freeze_bn_scales = true;
    rules.bn_shift_lr_scale = 4.0;
    rules.whiten_first_layer = true;
    let rules = fer_train::RunConfig { recipe: rules, ..tiny_fast(3) };
    // A stop asked for between folds waits for the next one (step 5 of 9).
    let early = tempfile::tempdir().unwrap();
    let stopped = run(early.path(), &lookahead, Some(3)).unwrap();
    assert_eq!((stopped.stop, stopped.state.step), (StopReason::StepLimit, fer_train::LOOKAHEAD_EVERY));
    for (name, config) in [
        ("report", tiny(3)),
        ("fast", tiny_fast(3)),
        ("fast bf16", bf16),
        ("fast sgd-nesterov", sgd),
        ("fast lookahead", lookahead),
        ("fast with flips, whitening and BatchNorm rules", rules),
        // The model variants: the config that rebuilds them must come back from config.json.
        ("fast, crop and second convolutions", fer_train::RunConfig { recipe: tiny_fast(3).recipe, ..tiny_variant(3) }),
    ] {
        interrupted_equals_uninterrupted(name, &config);
        // A run sets its precision only while it runs.
        assert_eq!(fer_kernels::precision(), fer_kernels::Precision::F32, "{name}");
    }
}

fn interrupted_equals_uninterrupted(name: &str, config: &fer_train::RunConfig) {
    let whole = tempfile::tempdir().unwrap();
    let uninterrupted = run(whole.path(), config, None).unwrap();

    let parts = tempfile::tempdir().unwrap();
    // 9 steps per epoch: stop mid-epoch 1, then at an epoch boundary, then finish.
    let first = run(parts.path(), config, Some(5)).unwrap();
    assert_eq!(first.stop, StopReason::StepLimit);
    let opts = |max_steps| TrainOptions { time_budget: None, stop: None, max_steps, observer: Box::leak(Box::new(())) };
    let device = Device::flex();
    let second = resume(parts.path(), &data(), &device, opts(Some(4))).unwrap();
    assert_eq!((second.state.epoch, second.state.step), (1, 0));
    let last = resume(parts.path(), &data(), &device, opts(None)).unwrap();
    assert_eq!(last.stop, StopReason::Finished);
    assert_eq!(numbers(&last.state), numbers(&uninterrupted.state), "{name}");
    for file in ["best.fer", "best-ema.fer"] {
        let (a, b) = (whole.path().join(file), parts.path().join(file));
        assert_eq!(a.exists(), b.exists(), "{name}: {file}");
        if a.exists() {
            // Compare weights, not bytes: burn's files also carry parameter ids, new each load.
            let weights = |p: std::path::PathBuf| fer_train::flat_weights(&fer_model::load_model(&p, &device).unwrap());
            assert!(weights(a) == weights(b), "{name}: {file} holds other weights after resume");
        }
    }
    if name.starts_with("fast") {
        assert!(whole.path().join("best-ema.fer").exists());
        assert!(last.state.history.iter().all(|r| r.ema_val_acc.is_some()));
    }
}
