use std::path::PathBuf;
use std::time::Duration;

use fer_data::augment::AugmentConfig;
use fer_model::{CnnConfig, DnnConfig, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Adam's hyper-parameters; the defaults are Keras' (ε = 1e-7, not burn's 1e-5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamParams {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
}

impl Default for AdamParams {
    fn default() -> Self {
        AdamParams { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 }
    }
}

/// How the learning rate moves over a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Schedule {
    Constant,
    /// Cosine decay from `lr` to `lr * min_factor` over the run's epochs.
    Cosine {
        min_factor: f64,
    },
    /// Keras' ReduceLROnPlateau on validation loss: multiply by `factor` after `patience` epochs
    /// without improvement, not below `min_lr`.
    ReduceOnPlateau {
        factor: f64,
        patience: usize,
        min_lr: f64,
    },
    /// One cycle, set every step: linear warm-up from `lr * start_factor` to `lr` over the first
    /// `warmup` fraction of all steps, then cosine decay to `lr * end_factor` at the last step.
    OneCycle {
        warmup: f64,
        start_factor: f64,
        end_factor: f64,
    },
}

impl Schedule {
    pub fn parse(name: &str) -> Result<Schedule, TrainError> {
        match name {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine { min_factor: 0.01 }),
            "plateau" | "reduce-on-plateau" => Ok(Schedule::ReduceOnPlateau { factor: 0.5, patience: 3, min_lr: 1e-6 }),
            "one-cycle" | "onecycle" => Ok(Schedule::one_cycle()),
            other => Err(TrainError::InvalidOption(format!(
                "unknown schedule {other:?}; valid: constant, cosine, plateau, one-cycle"
            ))),
        }
    }

    /// The fast recipe's schedule: 15% warm-up from a tenth of the peak, cosine down to zero.
    pub fn one_cycle() -> Schedule {
        Schedule::OneCycle { warmup: 0.15, start_factor: 0.1, end_factor: 0.0 }
    }

    /// Whether the rate changes every step (else once per epoch).
    pub fn is_per_step(&self) -> bool {
        matches!(self, Schedule::OneCycle { .. })
    }

    /// The rate of a per-step schedule at `step` (0-based) of `total` steps.
    pub fn lr_at_step(&self, base: f64, step: usize, total: usize) -> f64 {
        match *self {
            Schedule::OneCycle { warmup, start_factor, end_factor } => {
                let total = total.max(1) as f64;
                let warm = (warmup * total).round().max(0.0);
                let s = step as f64;
                if s < warm {
                    base * (start_factor + (1.0 - start_factor) * s / warm)
                } else {
                    let t = ((s - warm) / (total - 1.0 - warm).max(1.0)).clamp(0.0, 1.0);
                    base * (end_factor + (1.0 - end_factor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
                }
            }
            _ => base,
        }
    }
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

/// Everything that decides what a run computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub epochs: usize,
    /// Steps per epoch, sampling faces with reshuffles as Keras' `fit_generator` does; `None`
    /// means one pass over the training faces per epoch.
    pub steps_per_epoch: Option<usize>,
    pub batch_size: usize,
    pub lr: f64,
    pub adam: AdamParams,
    pub schedule: Schedule,
    pub augment: AugmentConfig,
    pub seed: u64,
    /// Decoupled weight decay (AdamW) when above zero; plain Adam at zero (the report).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight_decay: f32,
    /// Label smoothing of the cross-entropy targets (0 = none, the report).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_smoothing: f32,
    /// Keep an exponential moving average of the weights with this decay per step, evaluated
    /// beside the plain model and saved as `best-ema.fer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_decay: Option<f64>,
    /// What the convolutions multiply (see [`Precision`]); recorded so a resumed run keeps it.
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// Multiplies the model's dropout rates while training (1 = the model's own, the report's).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub dropout_scale: f64,
    /// The last fraction of the run's steps trains on the faces as they are, without
    /// augmentation (0 = augmented throughout, the report): less regularisation where a short
    /// schedule underfits, while the rate anneals.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub plain_tail: f32,
}

fn one() -> f64 {
    1.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

/// The convolutions' arithmetic: the kernels' own type, recorded in a run's config (lowercase).
pub use fer_kernels::Precision;

impl Recipe {
    /// The report's CNN recipe: 500 steps x batch 128 of augmented faces per epoch, Adam 1e-3.
    pub fn report_cnn() -> Recipe {
        Recipe {
            epochs: 30,
            steps_per_epoch: Some(500),
            batch_size: 128,
            lr: 1e-3,
            adam: AdamParams::default(),
            schedule: Schedule::Constant,
            augment: AugmentConfig::report(),
            seed: 0,
            weight_decay: 0.0,
            label_smoothing: 0.0,
            ema_decay: None,
            precision: Precision::F32,
            dropout_scale: 1.0,
            plain_tail: 0.0,
        }
    }

    /// The first step (counted over the whole run of `total_steps`) of the plain tail; `total_steps`
    /// when there is none.
    pub fn first_plain_step(&self, total_steps: usize) -> usize {
        total_steps - (total_steps as f64 * self.plain_tail as f64).round() as usize
    }

    /// fer's fast CNN recipe (docs/RECIPES.md): the report's model, batch and augmentation,
    /// trained for 2,000 steps (256,000 faces, about 22 minutes at 200 img/s on a 2-core Zen 4)
    /// with a one-cycle rate at twice the report's, AdamW, label smoothing 0.1, a weight average,
    /// half the report's dropout (+3.9 points at the end of the cycle: a schedule this short
    /// underfits with the full rates) and bf16 GEMMs (within half a point of f32 after the
    /// same steps, docs/PERFORMANCE.md).
    /// The step count, not the clock, defines it, so a run repeats exactly on any machine of the
    /// same kind (CPUs without AVX512-BF16 run it in f32).
    pub fn fast_cnn() -> Recipe {
        Recipe {
            precision: Precision::Bf16,
            epochs: 8,
            steps_per_epoch: Some(250),
            lr: 2e-3,
            schedule: Schedule::one_cycle(),
            weight_decay: 0.05,
            label_smoothing: 0.1,
            ema_decay: Some(0.998),
            dropout_scale: 0.5,
            ..Recipe::report_cnn()
        }
    }

    /// A recipe by name: `report` (the default) or `fast`.
    pub fn named(name: &str, model: &ModelConfig) -> Result<Recipe, TrainError> {
        match (name, model) {
            ("report", _) => Ok(Recipe::for_model(model)),
            ("fast", ModelConfig::Cnn(_)) => Ok(Recipe::fast_cnn()),
            ("fast", ModelConfig::Dnn(_)) => Err(TrainError::InvalidOption(
                "--recipe fast is for the CNN; the DNN has only the report's recipe".into(),
            )),
            (other, _) => Err(TrainError::InvalidOption(format!("unknown recipe {other:?}; valid: report, fast"))),
        }
    }

    /// The report's DNN recipe: plain epochs over the training set, no augmentation.
    pub fn report_dnn() -> Recipe {
        Recipe { epochs: 100, steps_per_epoch: None, augment: AugmentConfig::none(), ..Recipe::report_cnn() }
    }

    pub fn for_model(model: &ModelConfig) -> Recipe {
        match model {
            ModelConfig::Cnn(_) => Recipe::report_cnn(),
            ModelConfig::Dnn(_) => Recipe::report_dnn(),
        }
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::InvalidOption(m.into()));
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1");
        }
        if self.epochs == 0 {
            return bad("--epochs must be at least 1");
        }
        if self.steps_per_epoch == Some(0) {
            return bad("--steps-per-epoch must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("--lr must be a positive number");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("--label-smoothing must be in [0, 1)");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("--weight-decay must be zero or positive");
        }
        if self.ema_decay.is_some_and(|d| !(0.0..1.0).contains(&d)) {
            return bad("--ema-decay must be in [0, 1)");
        }
        if !(self.dropout_scale >= 0.0 && self.dropout_scale.is_finite()) {
            return bad("--dropout-scale must be zero or positive");
        }
        if !(0.0..=1.0).contains(&self.augment.erasing) {
            return bad("--random-erasing must be a probability in [0, 1]");
        }
        if !(0.0..1.0).contains(&self.plain_tail) {
            return bad("--plain-tail must be a fraction of the steps in [0, 1)");
        }
        Ok(())
    }
}

/// A run's full config, saved as `config.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    /// Where the faces came from (a path, or `synthetic:` for the embedded default).
    pub data: String,
    pub train_splits: Vec<String>,
    pub val_split: String,
    pub model: ModelConfig,
    pub recipe: Recipe,
    /// How `--time-budget` fixed the recipe's epochs and steps per epoch, when it did. A record
    /// only: the run computes from `recipe` alone, so a rerun by that count repeats it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sized_to_budget: Option<BudgetPlan>,
}

impl RunConfig {
    pub fn new(data: impl Into<String>, model: ModelConfig) -> RunConfig {
        RunConfig {
            data: data.into(),
            train_splits: vec!["Training".into()],
            val_split: "PublicTest".into(),
            recipe: Recipe::for_model(&model),
            model,
            sized_to_budget: None,
        }
    }

    /// A small CNN for quick runs and tests (same block structure, narrower layers).
    pub fn tiny_cnn() -> ModelConfig {
        ModelConfig::Cnn(
            CnnConfig::new()
                .with_conv_channels(vec![8, 16, 16, 32, 32])
                .with_conv_dropout(vec![0.0, 0.1, 0.1, 0.1, 0.1])
                .with_dense_units(vec![64, 32])
                .with_dense_dropout(vec![0.2, 0.2]),
        )
    }

    pub fn tiny_dnn() -> ModelConfig {
        ModelConfig::Dnn(DnnConfig::new().with_units(vec![64, 32]).with_dropout(vec![0.2, 0.2]))
    }

    pub fn path(run_dir: &std::path::Path) -> PathBuf {
        run_dir.join("config.json")
    }
}

/// `90s`, `45m`, `2h`, `1h30m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, TrainError> {
    let bad = || TrainError::InvalidOption(format!("cannot read duration {text:?}; write e.g. 90s, 45m, 2h or 1h30m"));
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return (secs >= 0.0).then(|| Duration::from_secs_f64(secs)).ok_or_else(bad);
    }
    let mut total = 0.0;
    let mut number = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() || ch == '.' {
            number.push(ch);
            continue;
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        number.clear();
        total += value
            * match ch {
                's' => 1.0,
                'm' => 60.0,
                'h' => 3600.0,
                _ => return Err(bad()),
            };
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// What the probe measured and the step count it fixed, recorded in the run's config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetPlan {
    pub budget_seconds: f64,
    /// Seconds the probe itself took (counted against the budget).
    pub probe_seconds: f64,
    /// Measured seconds per training step.
    pub step_seconds: f64,
    /// Estimated seconds of one epoch's validation (both weight sets when the recipe averages).
    pub eval_seconds: f64,
    pub epochs: usize,
    pub steps_per_epoch: usize,
}

impl BudgetPlan {
    /// Seconds the planned run should take by the probe's measurements.
    pub fn planned_seconds(&self) -> f64 {
        self.epochs as f64 * (self.steps_per_epoch as f64 * self.step_seconds + self.eval_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_rates_at_known_steps() {
        let s = Schedule::OneCycle { warmup: 0.2, start_factor: 0.1, end_factor: 0.0 };
        let lr = |step| s.lr_at_step(1.0, step, 101);
        // 20 warm-up steps from 0.1 to 1, then a half cosine over the remaining 80 to 0.
        assert!((lr(0) - 0.1).abs() < 1e-12);
        assert!((lr(10) - 0.55).abs() < 1e-12);
        assert!((lr(20) - 1.0).abs() < 1e-12);
        assert!((lr(60) - 0.5).abs() < 1e-12);
        assert!(lr(100).abs() < 1e-12);
        assert!(s.is_per_step() && !Schedule::Constant.is_per_step());
        assert_eq!(Schedule::parse("one-cycle").unwrap(), Schedule::one_cycle());
    }

    #[test]
    fn recipes_by_name() {
        let cnn = ModelConfig::by_name("cnn").unwrap();
        assert_eq!(Recipe::named("report", &cnn).unwrap(), Recipe::report_cnn());
        let fast = Recipe::named("fast", &cnn).unwrap();
        assert!(
            fast.ema_decay.is_some()
                && fast.label_smoothing > 0.0
                && fast.schedule.is_per_step()
                && fast.dropout_scale == 0.5
        );
        fast.validate().unwrap();
        assert!(Recipe::named("fast", &ModelConfig::by_name("dnn").unwrap()).is_err());
        assert!(Recipe::named("quick", &cnn).is_err());
        // The report's recipe serialises as before (old config.json files stay readable and equal).
        let json = serde_json::to_string(&Recipe::report_cnn()).unwrap();
        assert!(!json.contains("ema") && !json.contains("smoothing"), "{json}");
        let back: Recipe = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Recipe::report_cnn());
    }

    #[test]
    fn precision_is_recorded_only_when_not_f32_and_read_back() {
        let json = serde_json::to_string(&Recipe::report_cnn()).unwrap();
        assert!(!json.contains("precision"), "{json}");
        let bf16 = Recipe { precision: Precision::Bf16, ..Recipe::report_cnn() };
        let json = serde_json::to_string(&bf16).unwrap();
        assert!(json.contains(r#""precision":"bf16""#), "{json}");
        assert_eq!(serde_json::from_str::<Recipe>(&json).unwrap(), bf16);
    }

    #[test]
    fn the_plain_tail_is_recorded_only_when_set_checked_and_counted_in_steps() {
        let json = serde_json::to_string(&Recipe::report_cnn()).unwrap();
        assert!(!json.contains("plain_tail"), "{json}");
        let tail = Recipe { plain_tail: 0.2, ..Recipe::fast_cnn() };
        let json = serde_json::to_string(&tail).unwrap();
        assert!(json.contains(r#""plain_tail":0.2"#), "{json}");
        assert_eq!(serde_json::from_str::<Recipe>(&json).unwrap(), tail);
        assert_eq!(tail.first_plain_step(2000), 1600);
        assert_eq!(tail.first_plain_step(7), 6);
        assert_eq!(Recipe::fast_cnn().first_plain_step(2000), 2000);
        for bad in [-0.1, 1.0, f32::NAN] {
            let err = Recipe { plain_tail: bad, ..Recipe::fast_cnn() }.validate().unwrap_err().to_string();
            assert!(err.contains("--plain-tail"), "{bad}: {err}");
        }
    }

    #[test]
    fn dropout_scale_is_recorded_only_when_not_one_and_checked() {
        let json = serde_json::to_string(&Recipe::report_cnn()).unwrap();
        assert!(!json.contains("dropout"), "{json}");
        let light = Recipe { dropout_scale: 0.5, ..Recipe::report_cnn() };
        let json = serde_json::to_string(&light).unwrap();
        assert!(json.contains(r#""dropout_scale":0.5"#), "{json}");
        assert_eq!(serde_json::from_str::<Recipe>(&json).unwrap(), light);
        for bad in [-0.5, f64::NAN, f64::INFINITY] {
            let err = Recipe { dropout_scale: bad, ..Recipe::report_cnn() }.validate().unwrap_err().to_string();
            assert!(err.contains("--dropout-scale"), "{bad}: {err}");
        }
    }

    #[test]
    fn random_erasing_must_be_a_probability() {
        let with = |p: f64| {
            let mut r = Recipe::fast_cnn();
            r.augment.erasing = p;
            r.validate()
        };
        assert!(with(0.0).is_ok() && with(0.5).is_ok() && with(1.0).is_ok());
        for bad in [-0.1, 1.5, f64::NAN] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("--random-erasing"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60m").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
