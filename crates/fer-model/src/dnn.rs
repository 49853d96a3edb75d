use burn::config::Config;
use burn::module::Module;
use burn::nn::{BatchNormConfig, DropoutConfig, LeakyReluConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::ModelError;
use crate::cnn::DenseBlock;
use crate::tap::Tap;

/// The report's DNN (SEED Q2): five dense blocks of dense → LeakyReLU → dropout (optionally
/// with BatchNorm, the report's faster-converging variant), then 7 logits. 4,099,847 parameters.
#[derive(Config, Debug, PartialEq)]
pub struct DnnConfig {
    #[config(default = 48)]
    pub input_side: usize,
    #[config(default = 1)]
    pub input_channels: usize,
    #[config(default = 7)]
    pub num_classes: usize,
    #[config(default = "vec![1024, 1024, 512, 256, 128]")]
    pub units: Vec<usize>,
    #[config(default = "vec![0.3, 0.3, 0.4, 0.5, 0.5]")]
    pub dropout: Vec<f64>,
    #[config(default = false)]
    pub batch_norm: bool,
    #[config(default = 0.1)]
    pub leaky_slope: f64,
}

#[derive(Module, Debug)]
pub struct Dnn {
    pub blocks: Vec<DenseBlock>,
    pub logits: Linear,
}

impl DnnConfig {
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.units.len() != self.dropout.len() {
            return Err(ModelError::InvalidConfig("dnn: units and dropout need one entry per block".into()));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> Dnn {
        let mut in_features = self.input_side * self.input_side * self.input_channels;
        let blocks = self
            .units
            .iter()
            .zip(&self.dropout)
            .map(|(&units, &p)| {
                let block = DenseBlock {
                    dense: LinearConfig::new(in_features, units).init(device),
                    bn: self.batch_norm.then(|| BatchNormConfig::new(units).init(device)),
                    act: LeakyReluConfig::new().with_negative_slope(self.leaky_slope).init(),
                    dropout: DropoutConfig::new(p).init(),
                };
                in_features = units;
                block
            })
            .collect();
        Dnn { blocks, logits: LinearConfig::new(in_features, self.num_classes).init(device) }
    }
}

impl Dnn {
    pub(crate) fn forward_tapped(&self, x: Tensor<4>, tap: &mut Tap<'_>) -> Option<Tensor<2>> {
        let mut x = tap.dense("flatten", x.flatten(1, 3))?;
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward_tapped(&format!("fc{}", i + 1), x, tap)?;
        }
        tap.dense("logits", fer_kernels::linear(&self.logits, x))
    }
}
