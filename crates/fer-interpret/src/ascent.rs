//! Gradient ascent on the input: the pattern each filter (or class) responds to most.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::{NamedActivations, TapError};

/// The course's recipe by default: start from gray plus small noise, ascend the mean activation
/// with the gradient normalised by its RMS, 20 steps, no regulariser.
#[derive(Clone, Debug, PartialEq)]
pub struct AscentConfig {
    pub steps: usize,
    /// Input units per step after RMS normalisation (inputs live in [0, 1]).
    pub step_size: f32,
    /// Half-width of the uniform noise around gray 0.5 at the start.
    pub noise: f32,
    /// Multiply the image by (1 - l2_decay) after each step.
    pub l2_decay: f32,
    /// Blur with a 3x3 Gaussian every this many steps (0: never).
    pub blur_every: usize,
    /// Roll the image by up to this many pixels before each forward pass (0: never).
    pub jitter: usize,
    /// Weight of a total-variation penalty subtracted from the objective.
    pub tv_weight: f32,
    pub seed: u64,
}

impl Default for AscentConfig {
    fn default() -> Self {
        AscentConfig {
            steps: 20,
            step_size: 0.02,
            noise: 0.08,
            l2_decay: 0.0,
            blur_every: 0,
            jitter: 0,
            tv_weight: 0.0,
            seed: 0,
        }
    }
}

#[derive(Debug)]
pub struct AscentResult {
    /// One image per requested filter, `[filters, channels, h, w]`.
    pub images: Tensor<4>,
    /// The mean activation each image reached at the end.
    pub activations: Vec<f32>,
    /// The objective before each step and at the end: `trace[step][filter]`.
    pub trace: Vec<Vec<f32>>,
}

/// Per-image mean activation of its own filter at `layer` ([n]).
fn objective(model: &dyn NamedActivations, x: Tensor<4>, layer: &str, mask: &Tensor<4>) -> Result<Tensor<1>, TapError> {
    let act = model.forward_to(x, layer)?;
    let [n, _, _, _] = act.dims();
    Ok((act * mask.clone()).sum_dim(1).flatten::<2>(1, 3).mean_dim(1).reshape([n]))
}

fn total_variation(x: Tensor<4>) -> Tensor<1> {
    let [n, c, h, w] = x.dims();
    let dh = x.clone().slice([0..n, 0..c, 1..h, 0..w]) - x.clone().slice([0..n, 0..c, 0..h - 1, 0..w]);
    let dw = x.clone().slice([0..n, 0..c, 0..h, 1..w]) - x.slice([0..n, 0..c, 0..h, 0..w - 1]);
    dh.powi_scalar(2).sum() + dw.powi_scalar(2).sum()
}

fn blur(x: Tensor<4>) -> Tensor<4> {
    let [_, c, _, _] = x.dims();
    let k = [1.0f32, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0].map(|v| v / 16.0);
    let kernel: Vec<f32> = (0..c).flat_map(|_| k).collect();
    let weight = Tensor::<4>::from_data(TensorData::new(kernel, [c, 1, 3, 3]), &x.device());
    conv2d(x, weight, None, ConvOptions::new([1, 1], [1, 1], [1, 1], c))
}

/// Ascends, for each of `filters` at once (one image each, one batched forward/backward per
/// step), the mean activation of that filter at `layer` with respect to the input.
/// `shape` is the model's input `[channels, h, w]`; `device` must be an autodiff device.
pub fn gradient_ascent(
    model: &dyn NamedActivations,
    layer: &str,
    filters: &[usize],
    shape: [usize; 3],
    config: &AscentConfig,
    device: &Device,
) -> Result<AscentResult, TapError> {
    let [c, h, w] = shape;
    let n = filters.len();
    crate::check_layer(model, layer)?;
    let probe = model.forward_to(Tensor::<4>::zeros([1, c, h, w], device), layer)?;
    let channels = probe.dims()[1];
    if let Some(&filter) = filters.iter().find(|&&f| f >= channels) {
        return Err(TapError::FilterOutOfRange { layer: layer.into(), filter, channels });
    }
    let mut one_hot = vec![0.0f32; n * channels];
    for (i, &f) in filters.iter().enumerate() {
        one_hot[i * channels + f] = 1.0;
    }
    let mask = Tensor::<4>::from_data(TensorData::new(one_hot, [n, channels, 1, 1]), device);

    device.seed(config.seed);
    let mut x = Tensor::<4>::random([n, c, h, w], Distribution::Uniform(-1.0, 1.0), device) * config.noise + 0.5;
    let mut trace = Vec::with_capacity(config.steps + 1);
    let mut shifts = fer_shift_stream(config.seed);
    for step in 0..config.steps {
        let xs = x.detach().require_grad();
        let input = if config.jitter > 0 {
            let (dy, dx) = (shifts() % (2 * config.jitter + 1), shifts() % (2 * config.jitter + 1));
            xs.clone().roll(&[dy as i64 - config.jitter as i64, dx as i64 - config.jitter as i64], &[2, 3])
        } else {
            xs.clone()
        };
        let values = objective(model, input, layer, &mask)?;
        trace.push(values.clone().into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default());
        let mut total = values.sum();
        if config.tv_weight > 0.0 {
            total = total - total_variation(xs.clone()) * config.tv_weight;
        }
        let grads = total.backward();
        let g = xs.grad(&grads).unwrap_or_else(|| xs.zeros_like()).detach();
        let rms = g.clone().powi_scalar(2).flatten::<2>(1, 3).mean_dim(1).sqrt().reshape([n, 1, 1, 1]) + 1e-8;
        x = xs.detach() + g / rms * config.step_size;
        if config.l2_decay > 0.0 {
            x = x * (1.0 - config.l2_decay);
        }
        if config.blur_every > 0 && (step + 1) % config.blur_every == 0 {
            x = blur(x);
        }
    }
    let last = objective(model, x.clone().detach(), layer, &mask)?;
    let activations = last.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default();
    trace.push(activations.clone());
    Ok(AscentResult { images: x.detach(), activations, trace })
}

/// A small deterministic integer stream for jitter offsets.
fn fer_shift_stream(seed: u64) -> impl FnMut() -> usize {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 33) as usize
    }
}
