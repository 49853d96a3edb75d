use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, LeakyRelu, LeakyReluConfig, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::tensor::{Device, Tensor};

use crate::ModelError;
use crate::tap::Tap;

/// The report's CNN (SEED Q1): five blocks of conv → BatchNorm → LeakyReLU → [max-pool] →
/// dropout, two dense blocks of dense → BatchNorm → LeakyReLU → dropout, then 7 logits.
/// Defaults reproduce the report's Keras model exactly (4,087,879 parameters).
#[derive(Config, Debug)]
pub struct CnnConfig {
    /// Side of the square input in pixels.
    #[config(default = 48)]
    pub input_side: usize,
    #[config(default = 1)]
    pub input_channels: usize,
    #[config(default = 7)]
    pub num_classes: usize,
    /// Output channels of each conv block.
    #[config(default = "vec![64, 64, 128, 256, 512]")]
    pub conv_channels: Vec<usize>,
    /// Kernel side of each conv block (padding is "same").
    #[config(default = "vec![5, 3, 3, 3, 3]")]
    pub kernel_sizes: Vec<usize>,
    /// Whether each conv block ends with a 2x2 max-pool (the report's block 1 does not).
    #[config(default = "vec![false, true, true, true, true]")]
    pub pool: Vec<bool>,
    #[config(default = "vec![0.2, 0.2, 0.3, 0.4, 0.4]")]
    pub conv_dropout: Vec<f64>,
    #[config(default = "vec![512, 256]")]
    pub dense_units: Vec<usize>,
    #[config(default = "vec![0.5, 0.5]")]
    pub dense_dropout: Vec<f64>,
    #[config(default = 0.1)]
    pub leaky_slope: f64,
}

#[derive(Module, Debug)]
pub struct ConvBlock {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub act: LeakyRelu,
    pub pool: Option<MaxPool2d>,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct DenseBlock {
    pub dense: Linear,
    pub bn: Option<BatchNorm>,
    pub act: LeakyRelu,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct Cnn {
    pub blocks: Vec<ConvBlock>,
    pub dense: Vec<DenseBlock>,
    pub logits: Linear,
}

impl CnnConfig {
    pub fn validate(&self) -> Result<(), ModelError> {
        let n = self.conv_channels.len();
        if n == 0 || self.kernel_sizes.len() != n || self.pool.len() != n || self.conv_dropout.len() != n {
            return Err(ModelError::InvalidConfig(format!(
                "cnn: conv_channels, kernel_sizes, pool and conv_dropout need one entry per block (found {}, {}, {}, \
                    {})",
                n,
                self.kernel_sizes.len(),
                self.pool.len(),
                self.conv_dropout.len()
            )));
        }
        if let Some(k) = self.kernel_sizes.iter().find(|&&k| k % 2 == 0) {
            return Err(ModelError::InvalidConfig(format!(
                "cnn: kernel size {k} is even; \"same\" padding needs odd kernels"
            )));
        }
        if self.dense_units.len() != self.dense_dropout.len() {
            return Err(ModelError::InvalidConfig("cnn: dense_units and dense_dropout differ in length".into()));
        }
        if self.output_side() == 0 {
            return Err(ModelError::InvalidConfig("cnn: too many pooling blocks for the input size".into()));
        }
        Ok(())
    }

    /// Side of the last block's feature maps.
    pub fn output_side(&self) -> usize {
        self.pool.iter().fold(self.input_side, |side, &p| if p { side / 2 } else { side })
    }

    pub fn flatten_size(&self) -> usize {
        self.output_side() * self.output_side() * self.conv_channels.last().copied().unwrap_or(0)
    }

    pub fn init(&self, device: &Device) -> Cnn {
        let mut in_channels = self.input_channels;
        let blocks = (0..self.conv_channels.len())
            .map(|i| {
                let out = self.conv_channels[i];
                let k = self.kernel_sizes[i];
                let block = ConvBlock {
                    conv: Conv2dConfig::new([in_channels, out], [k, k])
                        .with_padding(PaddingConfig2d::Same)
                        .init(device),
                    bn: BatchNormConfig::new(out).init(device),
                    act: LeakyReluConfig::new().with_negative_slope(self.leaky_slope).init(),
                    pool: self.pool[i].then(|| MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()),
                    dropout: DropoutConfig::new(self.conv_dropout[i]).init(),
                };
                in_channels = out;
                block
            })
            .collect();
        let mut in_features = self.flatten_size();
        let dense = self
            .dense_units
            .iter()
            .zip(&self.dense_dropout)
            .map(|(&units, &p)| {
                let block = DenseBlock {
                    dense: LinearConfig::new(in_features, units).init(device),
                    bn: Some(BatchNormConfig::new(units).init(device)),
                    act: LeakyReluConfig::new().with_negative_slope(self.leaky_slope).init(),
                    dropout: DropoutConfig::new(p).init(),
                };
                in_features = units;
                block
            })
            .collect();
        Cnn { blocks, dense, logits: LinearConfig::new(in_features, self.num_classes).init(device) }
    }
}

impl ConvBlock {
    /// The block's convolution through fer's kernels (fast on the CPU, burn's own elsewhere).
    /// Padding is "same" for the odd kernels the config allows, as `Conv2dConfig` was given.
    pub fn conv_forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, kh, kw] = self.conv.weight.dims();
        fer_kernels::conv2d(x, self.conv.weight.val(), self.conv.bias.as_ref().map(|b| b.val()), [kh / 2, kw / 2])
    }
}

impl ConvBlock {
    /// Conv → BatchNorm → LeakyReLU → [max-pool] → dropout, tapping each output under `prefix`.
    /// `None` once the tap's stop layer has been reached.
    pub(crate) fn forward_tapped(&self, prefix: &str, x: Tensor<4>, tap: &mut Tap<'_>) -> Option<Tensor<4>> {
        let name = |layer: &str| format!("{prefix}.{layer}");
        let x = self.conv_bn_act(x, tap, &name)?;
        let x = match &self.pool {
            Some(pool) => tap.map(&name("pool"), fer_kernels::max_pool2d(pool, x))?,
            None => x,
        };
        tap.map(&name("dropout"), fer_kernels::dropout(&self.dropout, x))
    }

    /// Conv → BatchNorm → LeakyReLU; as fused kernels (the whole block for inference, BatchNorm
    /// with LeakyReLU for training) when nothing taps the layers in between.
    fn conv_bn_act(&self, x: Tensor<4>, tap: &mut Tap<'_>, name: &dyn Fn(&str) -> String) -> Option<Tensor<4>> {
        let fuse = tap.is_plain();
        let x = match if fuse { fer_kernels::conv_block_inference(&self.conv, &self.bn, &self.act, x) } else { Err(x) }
        {
            Ok(y) => return Some(y),
            Err(x) => x,
        };
        let x = tap.map(&name("conv"), self.conv_forward(x))?;
        let x = match if fuse { fer_kernels::batch_norm_leaky_train(&self.bn, &self.act, x) } else { Err(x) } {
            Ok(y) => return Some(y),
            Err(x) => x,
        };
        let x = tap.map(&name("bn"), fer_kernels::batch_norm(&self.bn, x))?;
        tap.map(&name("act"), fer_kernels::leaky_relu(&self.act, x))
    }
}

impl DenseBlock {
    /// Dense → [BatchNorm] → LeakyReLU → dropout, tapping each output under `prefix`.
    /// `None` once the tap's stop layer has been reached.
    pub(crate) fn forward_tapped(&self, prefix: &str, x: Tensor<2>, tap: &mut Tap<'_>) -> Option<Tensor<2>> {
        if self.bn.is_none() && tap.is_plain() {
            // Nothing taps the layers in between: one fused kernel each way.
            return Some(fer_kernels::linear_leaky_dropout(&self.dense, &self.act, &self.dropout, x));
        }
        let x = tap.dense(&format!("{prefix}.dense"), fer_kernels::linear(&self.dense, x))?;
        let x = self.bn_act(x, tap, prefix)?;
        tap.dense(&format!("{prefix}.dropout"), fer_kernels::dropout(&self.dropout, x))
    }

    /// [BatchNorm] → LeakyReLU; one fused kernel for training when nothing taps the layers.
    fn bn_act(&self, x: Tensor<2>, tap: &mut Tap<'_>, prefix: &str) -> Option<Tensor<2>> {
        let Some(bn) = &self.bn else {
            return tap.dense(&format!("{prefix}.act"), fer_kernels::leaky_relu(&self.act, x));
        };
        let x = match if tap.is_plain() { fer_kernels::batch_norm_leaky_train(bn, &self.act, x) } else { Err(x) } {
            Ok(y) => return Some(y),
            Err(x) => x,
        };
        let x = tap.dense(&format!("{prefix}.bn"), fer_kernels::batch_norm(bn, x))?;
        tap.dense(&format!("{prefix}.act"), fer_kernels::leaky_relu(&self.act, x))
    }
}

impl Cnn {
    pub(crate) fn forward_tapped(&self, x: Tensor<4>, tap: &mut Tap<'_>) -> Option<Tensor<2>> {
        let mut x = x;
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward_tapped(&format!("block{}", i + 1), x, tap)?;
        }
        let mut x = tap.dense("flatten", x.flatten(1, 3))?;
        for (i, block) in self.dense.iter().enumerate() {
            x = block.forward_tapped(&format!("fc{}", i + 1), x, tap)?;
        }
        tap.dense("logits", fer_kernels::linear(&self.logits, x))
    }
}
