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

/// The rule that turns gradients into weight updates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam (the report's), or AdamW when the recipe decays weights.
    #[default]
    Adam,
    /// SGD with Nesterov momentum 0.9 and no dampening, weight decay as an L2 term in the
    /// gradient (PyTorch's `SGD(nesterov=True)`): the best of six optimizers on FER2013 in
    /// Khaireddin & Chen (2021).
    SgdNesterov,
}

impl OptimizerKind {
    /// SGD's momentum: the value every public FER2013 recipe with SGD uses.
    pub const NESTEROV_MOMENTUM: f64 = 0.9;
    /// The peak rate `--optimizer sgd-nesterov` starts from: 0.1 per 256 faces (the linear
    /// scaling rule's reference) at the recipes' batch of 128.
    pub const SGD_LR: f64 = 0.05;
    /// The L2 weight decay it starts from: Khaireddin & Chen's on FER2013.
    pub const SGD_WEIGHT_DECAY: f32 = 1e-4;

    pub fn parse(name: &str) -> Result<OptimizerKind, TrainError> {
        match name {
            "adam" | "adamw" => Ok(OptimizerKind::Adam),
            "sgd-nesterov" | "nesterov" => Ok(OptimizerKind::SgdNesterov),
            other => Err(TrainError::InvalidOption(format!(
                "unknown optimizer {other:?}; valid: adam (AdamW with --weight-decay), sgd-nesterov"
            ))),
        }
    }

    pub fn is_adam(&self) -> bool {
        *self == OptimizerKind::Adam
    }
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
    /// Adam unless set (older config.json files have no such field and were all Adam).
    #[serde(default, skip_serializing_if = "OptimizerKind::is_adam")]
    pub optimizer: OptimizerKind,
    pub adam: AdamParams,
    pub schedule: Schedule,
    pub augment: AugmentConfig,
    pub seed: u64,
    /// Weight decay: with Adam, decoupled (AdamW) when above zero, plain Adam at zero (the
    /// report); with SGD, an L2 term added to the gradient.
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
    /// Every [`crate::LOOKAHEAD_EVERY`] steps, fold the weights into a short average and go on
    /// from it (airbench's lookahead; off in the report).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lookahead: bool,
    /// Keep every BatchNorm scale (γ) at its initial 1 (Page's "How to train your ResNet";
    /// trained in the report).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freeze_bn_scales: bool,
    /// BatchNorm shifts (β) move at this multiple of the rate (airbench's bias scaling; 1 in
    /// the report).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub bn_shift_lr_scale: f64,
    /// Start the first convolution as a whitening of the training faces' patches and keep it
    /// fixed (airbench's whitened first layer; trained from a random start in the report).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whiten_first_layer: bool,
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
            optimizer: OptimizerKind::Adam,
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
            lookahead: false,
            freeze_bn_scales: false,
            bn_shift_lr_scale: 1.0,
            whiten_first_layer: false,
        }
    }

    /// This recipe trained with SGD and Nesterov momentum instead of Adam, at SGD's own peak rate
    /// and weight decay ([`OptimizerKind::SGD_LR`], [`OptimizerKind::SGD_WEIGHT_DECAY`]): Adam's
    /// rate would barely move SGD's weights, and AdamW's decoupled decay is another quantity.
    /// The schedule, augmentation and everything else stay.
    pub fn with_sgd_nesterov(self) -> Recipe {
        Recipe {
            optimizer: OptimizerKind::SgdNesterov,
            lr: OptimizerKind::SGD_LR,
            weight_decay: OptimizerKind::SGD_WEIGHT_DECAY,
            ..self
        }
    }

    /// Whether the optimizer step treats some parameters apart (BatchNorm rules, a fixed first layer).
    pub fn has_param_rules(&self) -> bool {
        self.freeze_bn_scales || self.bn_shift_lr_scale != 1.0 || self.whiten_first_layer
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
        if self.augment.alternate_flips && !self.augment.horizontal_flip {
            return bad("--alternate-flips needs the recipe's horizontal flips (it has none, e.g. with --no-augment)");
        }
        if !(self.bn_shift_lr_scale >= 0.0 && self.bn_shift_lr_scale.is_finite()) {
            return bad("--bn-shift-lr-scale must be zero or positive");
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

/// What the probe measured and what it fixed, in the one line `fer train` and reproduce-report
/// print.
impl std::fmt::Display for BudgetPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2}s per step, {:.1}s per validation, probe {:.1}s: {} epochs x {} steps ({:.1} min planned)",
            self.step_seconds,
            self.eval_seconds,
            self.probe_seconds,
            self.epochs,
            self.steps_per_epoch,
            self.planned_seconds() / 60.0
        )
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

    /// `changed` differs from the report's recipe in one field: that field is absent from the
    /// report's config.json (old files stay readable and equal), written as `written` when set,
    /// and read back equal.
    fn recorded_only_when_set(changed: Recipe, key: &str, written: &str) {
        let json = serde_json::to_string(&Recipe::report_cnn()).unwrap();
        assert!(!json.contains(key), "{key} in the report's recipe: {json}");
        let json = serde_json::to_string(&changed).unwrap();
        assert!(json.contains(written), "{written} not in {json}");
        assert_eq!(serde_json::from_str::<Recipe>(&json).unwrap(), changed);
    }

    /// Each recipe is refused, and the message names `flag`.
    fn refused(recipes: impl IntoIterator<Item = Recipe>, flag: &str) {
        for r in recipes {
            let err = r.validate().expect_err(flag).to_string();
            assert!(err.contains(flag), "{r:?}: {err}");
        }
    }

    #[test]
    fn precision_is_recorded_only_when_not_f32_and_read_back() {
        recorded_only_when_set(
            Recipe { precision: Precision::Bf16, ..Recipe::report_cnn() },
            "precision",
            r#""precision":"bf16""#,
        );
    }

    #[test]
    fn the_plain_tail_is_recorded_only_when_set_checked_and_counted_in_steps() {
        let tail = Recipe { plain_tail: 0.2, ..Recipe::fast_cnn() };
        recorded_only_when_set(Recipe { plain_tail: 0.2, ..Recipe::report_cnn() }, "plain_tail", r#""plain_tail":0.2"#);
        assert_eq!(tail.first_plain_step(2000), 1600);
        assert_eq!(tail.first_plain_step(7), 6);
        assert_eq!(Recipe::fast_cnn().first_plain_step(2000), 2000);
        refused([-0.1, 1.0, f32::NAN].map(|bad| Recipe { plain_tail: bad, ..Recipe::fast_cnn() }), "--plain-tail");
    }

    #[test]
    fn batch_norm_rules_are_recorded_only_when_set_and_checked() {
        recorded_only_when_set(
            Recipe { freeze_bn_scales: true, ..Recipe::report_cnn() },
            "freeze_bn",
            r#""freeze_bn_scales":true"#,
        );
        recorded_only_when_set(
            Recipe { bn_shift_lr_scale: 8.0, ..Recipe::report_cnn() },
            "bn_shift",
            r#""bn_shift_lr_scale":8.0"#,
        );
        recorded_only_when_set(
            Recipe { whiten_first_layer: true, ..Recipe::report_cnn() },
            "whiten",
            r#""whiten_first_layer":true"#,
        );
        assert!(!Recipe::fast_cnn().has_param_rules());
        let mut alternating = Recipe::fast_cnn();
        alternating.augment.alternate_flips = true;
        assert!(alternating.validate().is_ok());
        alternating.augment.horizontal_flip = false;
        refused([alternating], "--alternate-flips");
        assert!(Recipe { bn_shift_lr_scale: 0.0, ..Recipe::fast_cnn() }.has_param_rules());
        refused(
            [-1.0, f64::NAN, f64::INFINITY].map(|bad| Recipe { bn_shift_lr_scale: bad, ..Recipe::fast_cnn() }),
            "--bn-shift-lr-scale",
        );
    }

    #[test]
    fn dropout_scale_is_recorded_only_when_not_one_and_checked() {
        recorded_only_when_set(
            Recipe { dropout_scale: 0.5, ..Recipe::report_cnn() },
            "dropout",
            r#""dropout_scale":0.5"#,
        );
        refused(
            [-0.5, f64::NAN, f64::INFINITY].map(|bad| Recipe { dropout_scale: bad, ..Recipe::report_cnn() }),
            "--dropout-scale",
        );
    }

    #[test]
    fn lookahead_is_recorded_only_when_on() {
        recorded_only_when_set(Recipe { lookahead: true, ..Recipe::report_cnn() }, "lookahead", r#""lookahead":true"#);
    }

    #[test]
    fn sgd_nesterov_is_recorded_only_when_chosen_with_sgds_own_rate_and_decay() {
        let sgd = Recipe::fast_cnn().with_sgd_nesterov();
        assert_eq!((sgd.lr, sgd.weight_decay), (0.05, 1e-4));
        // Only the optimizer's own numbers change: the schedule, smoothing, average and the rest stay.
        assert_eq!(
            Recipe { optimizer: OptimizerKind::Adam, lr: 2e-3, weight_decay: 0.05, ..sgd.clone() },
            Recipe::fast_cnn()
        );
        recorded_only_when_set(Recipe::report_cnn().with_sgd_nesterov(), "optimizer", r#""optimizer":"sgd-nesterov""#);
        assert_eq!(OptimizerKind::parse("sgd-nesterov").unwrap(), OptimizerKind::SgdNesterov);
        assert_eq!(OptimizerKind::parse("adamw").unwrap(), OptimizerKind::Adam);
        let err = OptimizerKind::parse("lion").unwrap_err().to_string();
        assert!(err.contains("\"lion\"") && err.contains("sgd-nesterov"), "{err}");
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
    fn a_budget_plan_reads_as_one_line() {
        let plan = BudgetPlan {
            budget_seconds: 1200.0,
            probe_seconds: 21.0,
            step_seconds: 3.25,
            eval_seconds: 40.0,
            epochs: 4,
            steps_per_epoch: 85,
        };
        assert_eq!(
            plan.to_string(),
            "3.25s per step, 40.0s per validation, probe 21.0s: 4 epochs x 85 steps (21.1 min planned)"
        );
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
