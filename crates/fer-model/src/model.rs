use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use fer_interpret::NamedActivations;

use crate::cnn::Cnn;
use crate::config::ModelConfig;
use crate::dnn::Dnn;
use crate::error::ModelError;
use crate::tap::Tap;

/// Pixel values are divided by this before entering the model.
pub const INPUT_SCALE: f32 = 255.0;

/// Class names in logit order (FER2013 ids).
pub const CLASS_NAMES: [&str; 7] = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"];

/// Burn initialises parameters lazily, at first use; touching each one right away makes the
/// initial weights a function of the device seed at construction, not of whatever random
/// draws happen before the first forward pass.
struct Materialize;

impl burn::module::ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let _ = param.val();
    }
}

#[derive(Module, Debug)]
pub enum Net {
    Cnn(Cnn),
    Dnn(Dnn),
}

/// A report model together with the config that built it, so it can be saved and reloaded
/// without restating its architecture.
#[derive(Module, Debug)]
pub struct FerModel {
    pub net: Net,
    #[module(skip)]
    config: ModelConfig,
}

impl FerModel {
    pub fn new(config: &ModelConfig, device: &Device) -> Result<FerModel, ModelError> {
        config.validate()?;
        let net = match config {
            ModelConfig::Cnn(c) => Net::Cnn(c.init(device)),
            ModelConfig::Dnn(c) => Net::Dnn(c.init(device)),
        };
        let model = FerModel { net, config: config.clone() };
        model.visit(&mut Materialize);
        Ok(model)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// `[channels, side, side]` of the input its first layer sees (a bigger input is cropped to
    /// its centre first, see [`FerModel::forward`]).
    pub fn input_shape(&self) -> [usize; 3] {
        match &self.config {
            ModelConfig::Cnn(c) => [c.input_channels, c.input_side, c.input_side],
            ModelConfig::Dnn(c) => [c.input_channels, c.input_side, c.input_side],
        }
    }

    /// Logits `[batch, classes]` for input `[batch, 1, 48, 48]` scaled to [0, 1]. A model built
    /// for a smaller side (`cnn-crop44`) looks at the centre of a bigger input, so every caller
    /// feeds 48x48 faces whatever the model.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        self.forward_with(input, &mut Tap::new(None, None)).expect("no stop layer was set")
    }

    fn forward_with(&self, input: Tensor<4>, tap: &mut Tap<'_>) -> Option<Tensor<2>> {
        let input = centre_crop(input, self.input_shape()[1]);
        match &self.net {
            Net::Cnn(m) => m.forward_tapped(input, tap),
            Net::Dnn(m) => m.forward_tapped(input, tap),
        }
    }

    /// Forward pass that hands every named layer's output to `tap` (see [`NamedActivations`]).
    pub fn forward_tapped(&self, input: Tensor<4>, tap: &mut dyn FnMut(&str, Tensor<4>) -> Tensor<4>) -> Tensor<2> {
        self.forward_with(input, &mut Tap::new(Some(tap), None)).expect("no stop layer was set")
    }

    /// The output of `layer`, computing only the layers up to it (`None` for an unknown name).
    pub fn forward_to(&self, input: Tensor<4>, layer: &str) -> Option<Tensor<4>> {
        let mut tap = Tap::new(None, Some(layer));
        match self.forward_with(input, &mut tap) {
            Some(_) => None,
            None => tap.stopped,
        }
    }

    /// Layer names and output shapes (without the batch axis), from a forward pass at batch 1.
    pub fn layer_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let device = self.devices().into_iter().next().unwrap_or_default();
        let [c, h, w] = self.input_shape();
        let input = Tensor::<4>::zeros([1, c, h, w], &device);
        let mut shapes = Vec::new();
        self.forward_tapped(input, &mut |name, x| {
            let dims = x.dims();
            let shape = if name.starts_with("block") { dims[1..].to_vec() } else { vec![dims[1]] };
            shapes.push((name.to_string(), shape));
            x
        });
        shapes
    }
}

impl NamedActivations for FerModel {
    fn layer_names(&self) -> Vec<String> {
        self.layer_shapes().into_iter().map(|(n, _)| n).collect()
    }

    fn class_names(&self) -> Vec<String> {
        CLASS_NAMES.iter().map(|s| s.to_string()).collect()
    }

    fn forward_tapped(&self, input: Tensor<4>, tap: &mut dyn FnMut(&str, Tensor<4>) -> Tensor<4>) -> Tensor<2> {
        FerModel::forward_tapped(self, input, tap)
    }

    fn forward_to(&self, input: Tensor<4>, layer: &str) -> Result<Tensor<4>, fer_interpret::TapError> {
        FerModel::forward_to(self, input, layer).ok_or_else(|| fer_interpret::TapError::unknown_layer(self, layer))
    }
}

/// The centre `side` x `side` of `input`; `input` itself when it is not bigger. An odd margin
/// leaves its extra pixel on the right and at the bottom.
fn centre_crop(input: Tensor<4>, side: usize) -> Tensor<4> {
    let [n, c, h, w] = input.dims();
    if h <= side || w <= side {
        return input;
    }
    let (top, left) = ((h - side) / 2, (w - side) / 2);
    input.slice([0..n, 0..c, top..top + side, left..left + side])
}

/// Turns `batch` faces of 48x48 `u8` pixels into the model's input tensor `[batch, 1, 48, 48]`.
pub fn input_from_pixels(pixels: &[u8], batch: usize, side: usize, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = pixels.iter().map(|p| *p as f32 / INPUT_SCALE).collect();
    Tensor::from_data(TensorData::new(values, [batch, 1, side, side]), device)
}
