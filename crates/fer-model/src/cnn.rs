use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, LeakyRelu, LeakyReluConfig, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::tap::Tap;

/// The report's CNN (SEED Q1): five blocks of conv → BatchNorm → LeakyReLU → [max-pool] →
/// dropout, two dense blocks of dense → BatchNorm → LeakyReLU → dropout, then 7 logits.
/// Defaults reproduce the report's Keras model exactly (4,087,879 parameters).
///
/// Serialised field by field in this order; `second_conv` only when set, so the config of
/// every model without it (the shipped one included) is written byte for byte as before.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CnnConfig {
    /// Side of the square input in pixels.
    pub input_side: usize,
    pub input_channels: usize,
    pub num_classes: usize,
    /// Output channels of each conv block.
    pub conv_channels: Vec<usize>,
    /// Kernel side of each conv block (padding is "same").
    pub kernel_sizes: Vec<usize>,
    /// Whether each conv block ends with a 2x2 max-pool (the report's block 1 does not).
    pub pool: Vec<bool>,
    pub conv_dropout: Vec<f64>,
    pub dense_units: Vec<usize>,
    pub dense_dropout: Vec<f64>,
    pub leaky_slope: f64,
    /// Whether each conv block has a second convolution (same width and kernel, its own
    /// BatchNorm) before its pool, as VGG-style stages do; empty: none (the report's CNN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub second_conv: Vec<bool>,
}

impl Default for CnnConfig {
    fn default() -> Self {
        CnnConfig {
            input_side: 48,
            input_channels: 1,
            num_classes: 7,
            conv_channels: vec![64, 64, 128, 256, 512],
            kernel_sizes: vec![5, 3, 3, 3, 3],
            pool: vec![false, true, true, true, true],
            conv_dropout: vec![0.2, 0.2, 0.3, 0.4, 0.4],
            dense_units: vec![512, 256],
            dense_dropout: vec![0.5, 0.5],
            leaky_slope: 0.1,
            second_conv: Vec::new(),
        }
    }
}

/// `with_<field>(value)` builders, in the style of burn's `Config` derive.
macro_rules! builders {
    ($($with:ident => $field:ident: $ty:ty),* $(,)?) => {
        impl CnnConfig {
            $(pub fn $with(mut self, $field: $ty) -> Self {
                self.$field = $field;
                self
            })*
        }
    };
}

builders! {
    with_input_side => input_side: usize,
    with_input_channels => input_channels: usize,
    with_num_classes => num_classes: usize,
    with_conv_channels => conv_channels: Vec<usize>,
    with_kernel_sizes => kernel_sizes: Vec<usize>,
    with_pool => pool: Vec<bool>,
    with_conv_dropout => conv_dropout: Vec<f64>,
    with_dense_units => dense_units: Vec<usize>,
    with_dense_dropout => dense_dropout: Vec<f64>,
    with_leaky_slope => leaky_slope: f64,
    with_second_conv => second_conv: Vec<bool>,
}

/// A block's second convolution and its BatchNorm (`CnnConfig::second_conv`).
#[derive(Module, Debug)]
pub struct SecondConv {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

#[derive(Module, Debug)]
pub struct ConvBlock {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub act: LeakyRelu,
    pub pool: Option<MaxPool2d>,
    pub dropout: Dropout,
    /// Last, so the report's CNN visits (and stores) its parameters in the order it always has.
    pub second: Option<SecondConv>,
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
    /// The report's CNN.
    pub fn new() -> CnnConfig {
        CnnConfig::default()
    }

    /// Whether block `i` (from 0) has a second convolution.
    pub fn has_second_conv(&self, i: usize) -> bool {
        self.second_conv.get(i).copied().unwrap_or(false)
    }

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
        if !self.second_conv.is_empty() && self.second_conv.len() != n {
            return Err(ModelError::InvalidConfig(format!(
                "cnn: second_conv needs one entry per block ({n}) or none (found {})",
                self.second_conv.len()
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
                let conv = |cin: usize| Conv2dConfig::new([cin, out], [k, k]).with_padding(PaddingConfig2d::Same);
                let block = ConvBlock {
                    conv: conv(in_channels).init(device),
                    bn: BatchNormConfig::new(out).init(device),
                    act: LeakyReluConfig::new().with_negative_slope(self.leaky_slope).init(),
                    pool: self.pool[i].then(|| MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()),
                    dropout: DropoutConfig::new(self.conv_dropout[i]).init(),
                    second: self.has_second_conv(i).then(|| SecondConv {
                        conv: conv(out).init(device),
                        bn: BatchNormConfig::new(out).init(device),
                    }),
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

/// A "same"-padded convolution through fer's kernels (fast on the CPU, burn's own elsewhere);
/// padding is "same" for the odd kernels the config allows, as `Conv2dConfig` was given.
fn conv_same(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, kh, kw] = conv.weight.dims();
    fer_kernels::conv2d(x, conv.weight.val(), conv.bias.as_ref().map(|b| b.val()), [kh / 2, kw / 2])
}

impl ConvBlock {
    /// The block's first convolution.
    pub fn conv_forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_same(&self.conv, x)
    }

    /// Conv → BatchNorm → LeakyReLU → [conv2 → bn2 → act2] → [max-pool] → dropout, tapping each
    /// output under `prefix`. `None` once the tap's stop layer has been reached.
    pub(crate) fn forward_tapped(&self, prefix: &str, x: Tensor<4>, tap: &mut Tap<'_>) -> Option<Tensor<4>> {
        let name = |layer: &str| format!("{prefix}.{layer}");
        let x = conv_bn_act(&self.conv, &self.bn, &self.act, x, tap, &name)?;
        let x = match &self.second {
            Some(second) => {
                conv_bn_act(&second.conv, &second.bn, &self.act, x, tap, &|layer| name(&format!("{layer}2")))?
            }
            None => x,
        };
        let x = match &self.pool {
            Some(pool) => tap.map(&name("pool"), fer_kernels::max_pool2d(pool, x))?,
            None => x,
        };
        tap.map(&name("dropout"), fer_kernels::dropout(&self.dropout, x))
    }
}

/// Conv → BatchNorm → LeakyReLU, tapped as `name("conv")`, `name("bn")`, `name("act")` (built
/// only when tapped); as fused kernels (the whole block for inference, BatchNorm with LeakyReLU
/// for training) when nothing taps the layers in between.
fn conv_bn_act(
    conv: &Conv2d,
    bn: &BatchNorm,
    act: &LeakyRelu,
    x: Tensor<4>,
    tap: &mut Tap<'_>,
    name: &dyn Fn(&str) -> String,
) -> Option<Tensor<4>> {
    let fuse = tap.is_plain();
    let x = match if fuse { fer_kernels::conv_block_inference(conv, bn, act, x) } else { Err(x) } {
        Ok(y) => return Some(y),
        Err(x) => x,
    };
    let x = tap.map(&name("conv"), conv_same(conv, x))?;
    let x = match if fuse { fer_kernels::batch_norm_leaky_train(bn, act, x) } else { Err(x) } {
        Ok(y) => return Some(y),
        Err(x) => x,
    };
    let x = tap.map(&name("bn"), fer_kernels::batch_norm(bn, x))?;
    tap.map(&name("act"), fer_kernels::leaky_relu(act, x))
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
