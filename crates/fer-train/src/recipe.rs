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
    Cosine { min_factor: f64 },
    /// Keras' ReduceLROnPlateau on validation loss: multiply by `factor` after `patience` epochs
    /// without improvement, not below `min_lr`.
    ReduceOnPlateau { factor: f64, patience: usize, min_lr: f64 },
}

impl Schedule {
    pub fn parse(name: &str) -> Result<Schedule, TrainError> {
        match name {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine { min_factor: 0.01 }),
            "plateau" | "reduce-on-plateau" => Ok(Schedule::ReduceOnPlateau { factor: 0.5, patience: 3, min_lr: 1e-6 }),
            other => Err(TrainError::InvalidOption(format!("unknown schedule {other:?}; valid: constant, cosine, plateau"))),
        }
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
    pub adam: AdamParams,
    pub schedule: Schedule,
    pub augment: AugmentConfig,
    pub seed: u64,
}

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
}

impl RunConfig {
    pub fn new(data: impl Into<String>, model: ModelConfig) -> RunConfig {
        RunConfig {
            data: data.into(),
            train_splits: vec!["Training".into()],
            val_split: "PublicTest".into(),
            recipe: Recipe::for_model(&model),
            model,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60m").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
