use serde::{Deserialize, Serialize};

use crate::{CnnConfig, DnnConfig, ModelError};

/// Either architecture, tagged so a saved model says which it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelConfig {
    Cnn(CnnConfig),
    Dnn(DnnConfig),
}

/// The largest model a config may describe: 250 M parameters (1 GB of f32), sixty times the
/// report's CNN.
pub const MAX_PARAMETERS: u64 = 250_000_000;
/// Names [`ModelConfig::by_name`] knows: the report's two models, then the CNN's variants.
pub const MODEL_NAMES: [&str; 4] = ["cnn", "dnn", "cnn-crop44", "cnn-double"];

/// Input side of `cnn-crop44`: the crop the strongest public FER2013 models train on.
pub const CROP_SIDE: usize = 44;

/// The largest input side a config may ask for.
pub const MAX_INPUT_SIDE: usize = 1024;

impl ModelConfig {
    /// The report's CNN or DNN by name (`cnn`, `dnn`), with the report's defaults, or a named
    /// variant of the CNN (see [`MODEL_NAMES`]).
    pub fn by_name(name: &str) -> Result<ModelConfig, ModelError> {
        match name.to_ascii_lowercase().as_str() {
            "cnn" => Ok(ModelConfig::Cnn(CnnConfig::new())),
            "dnn" => Ok(ModelConfig::Dnn(DnnConfig::new())),
            // Faces stay 48x48 everywhere; the model looks at their centre (`FerModel::forward`),
            // and training's random shifts make that a random 44x44 crop of the face.
            "cnn-crop44" => Ok(ModelConfig::Cnn(CnnConfig::new().with_input_side(CROP_SIDE))),
            // Every FER2013 model above 72% has two convolutions per stage; the two deepest
            // blocks get theirs (the earlier ones would double the step's cost).
            "cnn-double" => {
                Ok(ModelConfig::Cnn(CnnConfig::new().with_second_conv(vec![false, false, false, true, true])))
            }
            other => Err(ModelError::InvalidConfig(format!(
                "unknown model {other:?}; valid models: {}",
                MODEL_NAMES.join(", ")
            ))),
        }
    }

    /// The name [`ModelConfig::by_name`] builds this architecture from (dropout rates aside,
    /// as training scales them), or its kind for an architecture without a name.
    pub fn name(&self) -> &'static str {
        let architecture = self.with_dropout_scaled(0.0);
        MODEL_NAMES
            .into_iter()
            .find(|name| ModelConfig::by_name(name).is_ok_and(|named| named.with_dropout_scaled(0.0) == architecture))
            .unwrap_or(self.kind())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Cnn(_) => "cnn",
            ModelConfig::Dnn(_) => "dnn",
        }
    }

    /// The same model with every dropout rate multiplied by `scale`: a training choice (short
    /// schedules underfit with the report's rates), the parameters are unchanged. Rates that
    /// reach 1 are refused by [`ModelConfig::validate`].
    pub fn with_dropout_scaled(&self, scale: f64) -> ModelConfig {
        let scaled = |rates: &[f64]| rates.iter().map(|p| p * scale).collect::<Vec<f64>>();
        match self {
            ModelConfig::Cnn(c) => ModelConfig::Cnn(CnnConfig {
                conv_dropout: scaled(&c.conv_dropout),
                dense_dropout: scaled(&c.dense_dropout),
                ..c.clone()
            }),
            ModelConfig::Dnn(d) => ModelConfig::Dnn(DnnConfig { dropout: scaled(&d.dropout), ..d.clone() }),
        }
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        self.check_bounds()?;
        match self {
            ModelConfig::Cnn(c) => c.validate(),
            ModelConfig::Dnn(c) => c.validate(),
        }
    }

    /// Sizes a config may ask for. A config comes from model files and checkpoints that may be
    /// hostile: every number that sizes memory is bounded before anything is allocated.
    fn check_bounds(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::InvalidConfig(m));
        let (side, channels, classes, widths, dropouts): (usize, usize, usize, Vec<usize>, Vec<f64>) = match self {
            ModelConfig::Cnn(c) => (
                c.input_side,
                c.input_channels,
                c.num_classes,
                c.conv_channels.iter().chain(&c.kernel_sizes).chain(&c.dense_units).copied().collect(),
                c.conv_dropout.iter().chain(&c.dense_dropout).copied().collect(),
            ),
            ModelConfig::Dnn(c) => (c.input_side, c.input_channels, c.num_classes, c.units.clone(), c.dropout.clone()),
        };
        if !(1..=MAX_INPUT_SIDE).contains(&side) || !(1..=4).contains(&channels) || !(1..=1000).contains(&classes) {
            return bad(format!(
                "input {side}x{side}x{channels} with {classes} classes is outside 1-{MAX_INPUT_SIDE} pixels, 1-4 \
                    channels, 1-1000 classes"
            ));
        }
        if widths.len() > 64 || widths.iter().any(|&w| w == 0 || w > 65_536) {
            return bad("layer widths and kernel sizes must be 1-65,536, at most 64 of them".into());
        }
        if dropouts.iter().any(|p| !(0.0..1.0).contains(p)) {
            return bad("dropout rates must be in [0, 1)".into());
        }
        let params = self.parameter_estimate();
        if params > MAX_PARAMETERS {
            return bad(format!("{params} parameters is over the limit of {MAX_PARAMETERS}"));
        }
        Ok(())
    }

    /// Parameters the config creates (weights, biases, BatchNorm's four vectors), computed
    /// without allocating and saturating instead of overflowing.
    pub fn parameter_estimate(&self) -> u64 {
        let (m, a) = (|x: u64, y: u64| x.saturating_mul(y), |x: u64, y: u64| x.saturating_add(y));
        match self {
            ModelConfig::Cnn(c) => {
                let mut total = 0u64;
                let mut cin = c.input_channels as u64;
                let mut side = c.input_side as u64;
                for (i, &cout) in c.conv_channels.iter().enumerate() {
                    let (cout, k) = (cout as u64, c.kernel_sizes.get(i).copied().unwrap_or(1) as u64);
                    total = a(total, a(m(m(k, k), m(cin, cout)), m(5, cout)));
                    if c.has_second_conv(i) {
                        total = a(total, a(m(m(k, k), m(cout, cout)), m(5, cout)));
                    }
                    cin = cout;
                    if c.pool.get(i).copied().unwrap_or(false) {
                        side /= 2;
                    }
                }
                let mut fin = m(m(side, side), cin);
                for &u in &c.dense_units {
                    total = a(total, a(m(fin, u as u64), m(5, u as u64)));
                    fin = u as u64;
                }
                a(total, a(m(fin, c.num_classes as u64), c.num_classes as u64))
            }
            ModelConfig::Dnn(c) => {
                let mut total = 0u64;
                let mut fin = m(m(c.input_side as u64, c.input_side as u64), c.input_channels as u64);
                let per_unit = if c.batch_norm { 5 } else { 1 };
                for &u in &c.units {
                    total = a(total, a(m(fin, u as u64), m(per_unit, u as u64)));
                    fin = u as u64;
                }
                a(total, a(m(fin, c.num_classes as u64), c.num_classes as u64))
            }
        }
    }
}

#[cfg(test)]
mod bounds_tests {
    use super::*;

    #[test]
    fn parameter_estimate_is_exact_for_the_report_models() {
        assert_eq!(ModelConfig::by_name("cnn").unwrap().parameter_estimate(), 4_087_879);
        assert_eq!(ModelConfig::by_name("dnn").unwrap().parameter_estimate(), 4_099_847);
    }

    #[test]
    fn dropout_scaling_changes_rates_not_parameters() {
        let cnn = ModelConfig::by_name("cnn").unwrap().with_dropout_scaled(0.5);
        let ModelConfig::Cnn(c) = &cnn else { panic!("not a cnn") };
        assert_eq!(c.conv_dropout, vec![0.1, 0.1, 0.15, 0.2, 0.2]);
        assert_eq!(c.dense_dropout, vec![0.25, 0.25]);
        assert_eq!(cnn.parameter_estimate(), 4_087_879);
        let dnn = ModelConfig::by_name("dnn").unwrap();
        let ModelConfig::Dnn(before) = &dnn else { panic!("not a dnn") };
        let ModelConfig::Dnn(after) = dnn.with_dropout_scaled(0.0) else { panic!("not a dnn") };
        assert!(before.dropout.iter().any(|&p| p > 0.0));
        assert!(after.dropout.iter().all(|&p| p == 0.0));
        assert!(
            ModelConfig::by_name("cnn")
                .unwrap()
                .with_dropout_scaled(2.5)
                .validate()
                .unwrap_err()
                .to_string()
                .contains("dropout")
        );
    }

    #[test]
    fn hostile_sizes_are_refused_before_allocation() {
        let mut c = CnnConfig::new();
        c.dense_units = vec![1 << 16, 1 << 16];
        let err = ModelConfig::Cnn(c).validate().unwrap_err().to_string();
        assert!(err.contains("parameters is over the limit of 250000000"), "{err}");
        let mut c = CnnConfig::new();
        c.input_side = usize::MAX;
        assert!(ModelConfig::Cnn(c).validate().unwrap_err().to_string().contains("outside 1-1024 pixels"));
        let mut d = DnnConfig::new();
        d.units = vec![usize::MAX; 5];
        assert!(ModelConfig::Dnn(d).validate().is_err());
        let mut d = DnnConfig::new();
        d.dropout = vec![1.5; 5];
        assert!(ModelConfig::Dnn(d).validate().unwrap_err().to_string().contains("dropout"));
    }
}
