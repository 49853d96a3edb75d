//! Fast CPU kernels for fer's models, plugged into burn through its backend-extension mechanism.
//!
//! Every function here takes and returns ordinary `burn::Tensor`s and runs on any device: on
//! burn's `flex` CPU backend (with or without autodiff) it uses fer's own kernels, anywhere else
//! (CUDA, other backends, non-`f32` tensors) the plain burn operation. The kernels are checked
//! against the plain path, outputs and gradients, by this crate's tests.
//!
//! [`set_fast_path`] (one of the switches in [`settings`]) turns the kernels off process-wide, which
//! is how `fer bench` measures the plain path in the same process and how a user rules them out
//! when chasing a numerical question.

use burn::backend::DispatchDevice;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Dropout, LeakyRelu, Linear, PaddingConfig2d};
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Distribution, Tensor};

// The modules from the bottom up: each imports only modules listed above it (docs/ARCHITECTURE.md,
// "fer-kernels"), and the crate root, which turns the kernels into burn operations, is the top.
pub mod cpu;
pub mod settings;
pub mod bf16;
#[macro_use]
mod simd;
mod scratch;
pub mod shape;
pub mod profile;
pub mod gemm;
pub mod pointwise;
pub mod conv;
pub mod dense;
pub mod adam;
mod flex;

pub use cpu::{bf16_kernel, simd_level};
pub use settings::{
    Precision, effective_precision, fast_path_enabled, precision, set_fast_path, set_panel_f32, set_precision,
    set_tiles, set_winograd,
};

/// Whether fer's kernels will run for a tensor on this device with this dtype.
pub fn uses_fast_path(device: &burn::tensor::Device, dtype: DType) -> bool {
    fast_path_enabled()
        && dtype == DType::F32
        && matches!(device.as_dispatch().clone().inner(), DispatchDevice::Flex(_))
}

/// 2-D convolution with stride 1 and dilation 1, `padding = [rows, columns]` on each side:
/// `x [n, cin, h, w]`, `weight [cout, cin, kh, kw]`, `bias [cout]`.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, padding: [usize; 2]) -> Tensor<4> {
    if !fast_for(&x) || weight.dtype() != DType::F32 {
        return burn_conv2d(x, weight, bias, ConvOptions::new([1, 1], padding, [1, 1], 1));
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[0]], &weight.device()));
    flex::conv2d(x, weight, bias, padding)
}

fn fast_for<const D: usize>(x: &Tensor<D>) -> bool {
    uses_fast_path(&x.device(), x.dtype())
}

/// Whether `bn` normalises `x` with batch statistics: burn's rule (a gradient device and a layer
/// not frozen).
fn trains<const D: usize>(bn: &BatchNorm, x: &Tensor<D>) -> bool {
    x.device().is_autodiff() && bn.training.is_enabled()
}

/// A burn `BatchNorm` layer's forward pass: batch statistics (and a running-statistics update,
/// exactly as burn's layer does) in training, running statistics otherwise.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    if !fast_for(&x) || (x.device().is_autodiff() && !trains(bn, &x)) {
        // Frozen layers on a gradient device (interpretability) keep burn's differentiable path.
        return bn.forward(x);
    }
    if trains(bn, &x) {
        return batch_norm_train(bn, None, x);
    }
    let channels = x.dims()[1];
    let stats = Tensor::cat(
        vec![bn.running_mean.value().reshape([1, channels]), bn.running_var.value().reshape([1, channels])],
        0,
    );
    flex::batch_norm(x, bn.gamma.val(), bn.beta.val(), stats, bn.epsilon as f32, None)
}

/// BatchNorm then LeakyReLU as one kernel each way while training on the fast path (the
/// normalised pre-activation is never stored; the backward pass recomputes it). `Err` gives the
/// input back where that does not apply, for the caller to run the layers one by one.
// `Err` hands the caller its own input back (no copy); its size is a burn tensor's.
#[allow(clippy::result_large_err)]
pub fn batch_norm_leaky_train<const D: usize>(
    bn: &BatchNorm,
    act: &LeakyRelu,
    x: Tensor<D>,
) -> Result<Tensor<D>, Tensor<D>> {
    if !fast_for(&x) || !trains(bn, &x) || act.negative_slope < 0.0 {
        return Err(x);
    }
    Ok(batch_norm_train(bn, Some(act.negative_slope as f32), x))
}

/// Training-mode BatchNorm (+ LeakyReLU with `slope`) on the fast path, updating the running
/// statistics as burn's layer does.
fn batch_norm_train<const D: usize>(bn: &BatchNorm, slope: Option<f32>, x: Tensor<D>) -> Tensor<D> {
    let channels = x.dims()[1];
    let stats = flex::bn_stats(x.clone());
    let batch = stats.clone().detach();
    let mean = batch.clone().slice([0..1, 0..channels]).reshape([channels]);
    let var = batch.slice([1..2, 0..channels]).reshape([channels]);
    let device = x.device();
    let momentum = bn.momentum;
    let running_mean =
        bn.running_mean.value_sync().to_device(&device).mul_scalar(1.0 - momentum).add(mean.mul_scalar(momentum));
    let running_var =
        bn.running_var.value_sync().to_device(&device).mul_scalar(1.0 - momentum).add(var.mul_scalar(momentum));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());
    flex::batch_norm(x, bn.gamma.val(), bn.beta.val(), stats, bn.epsilon as f32, slope)
}

/// A burn `LeakyRelu` layer's forward pass. fer's kernel runs where there will be a backward pass
/// (burn records three operations and a mask for it); for inference burn's own operation on `flex`
/// works in place and is as fast (the CNN's conv blocks fuse the activation anyway).
pub fn leaky_relu<const D: usize>(act: &LeakyRelu, x: Tensor<D>) -> Tensor<D> {
    if !fast_for(&x) || !x.device().is_autodiff() || act.negative_slope < 0.0 {
        return act.forward(x);
    }
    flex::leaky_relu(x, act.negative_slope as f32)
}

/// A burn `Dropout` layer's forward pass. The mask's seed is drawn from burn's random generator
/// on the tensor's device, so `Device::seed` makes runs (and resumed runs) repeat exactly.
pub fn dropout<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    if !fast_for(&x) || !layer.training.is_enabled() || !x.device().is_autodiff() || layer.prob == 0.0 {
        return layer.forward(x);
    }
    let seed = dropout_seed(&x.device());
    flex::dropout(x, seed, layer.prob as f32)
}

/// A dropout mask's seed, drawn from burn's random generator on `device`.
fn dropout_seed(device: &burn::tensor::Device) -> u64 {
    let draws = Tensor::<1>::random([2], Distribution::Uniform(0.0, 1.0), &device.clone().inner()).into_data();
    let draws = draws.convert::<f32>().try_into_vec::<f32>().unwrap_or_default();
    draws.iter().fold(0u64, |acc, v| (acc << 32) ^ u64::from(v.to_bits()))
}

/// A burn `Linear` layer's forward pass for `[batch, features]` inputs, through [`dense`]'s
/// GEMM on the fast path.
pub fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    match fast_dense(layer, &x) {
        Some((weight, bias)) => flex::dense(x, weight, bias, None, None),
        None => layer.forward(x),
    }
}

/// Dense → LeakyReLU → dropout, as one kernel each way on the fast path ([`dense`]): the bias,
/// activation and dropout mask are applied as the product's output is finished, and the backward
/// pass recomputes the mask from its seed. The seed is drawn exactly as [`dropout`] draws it, so
/// a run gives the masks it gave with the layers one by one. Elsewhere, the layers one by one.
pub fn linear_leaky_dropout(layer: &Linear, act: &LeakyRelu, drop: &Dropout, x: Tensor<2>) -> Tensor<2> {
    // burn's layer drops only on a gradient device, in training.
    let dropping = drop.training.is_enabled() && drop.prob > 0.0 && x.device().is_autodiff();
    match fast_dense(layer, &x).filter(|_| act.negative_slope >= 0.0) {
        Some((weight, bias)) => {
            let mask = dropping.then(|| dense::DropoutMask { seed: dropout_seed(&x.device()), prob: drop.prob as f32 });
            flex::dense(x, weight, bias, Some(act.negative_slope as f32), mask)
        }
        None => dropout(drop, leaky_relu(act, linear(layer, x))),
    }
}

/// The layer's weight and bias (zeros where it has none) where its product runs on the fast path.
fn fast_dense(layer: &Linear, x: &Tensor<2>) -> Option<(Tensor<2>, Tensor<1>)> {
    let weight = layer.weight.val();
    if !fast_for(x) || weight.dtype() != DType::F32 {
        return None;
    }
    let bias = layer.bias.as_ref().map_or_else(|| Tensor::zeros([weight.dims()[1]], &weight.device()), |b| b.val());
    Some((weight, bias))
}

/// A burn `MaxPool2d` layer's forward pass; fer's kernel covers the 2x2, stride-2, unpadded case.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let simple = pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && matches!(pool.padding, PaddingConfig2d::Valid);
    if !fast_for(&x) || !simple {
        return pool.forward(x);
    }
    flex::max_pool2x2(x)
}

/// One Adam or AdamW step on a parameter: `(parameter, first moment, second moment)` after it.
/// `moments` is `None` on the parameter's first step. On the fast path this is one fused pass
/// ([`adam::adam_update`]); elsewhere burn's own tensor operations in the same order. Either
/// way the values are those of burn's `Adam` (`step.decoupled_decay == None`) or `AdamW`.
pub fn adam<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
    step: &adam::AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    if fast_for(&param) && grad.dtype() == DType::F32 && !param.device().is_autodiff() {
        let first = moments.is_none();
        let (m, v) = moments.unwrap_or_else(|| (param.zeros_like(), param.zeros_like()));
        return flex::adam(param, grad, m, v, first, step);
    }
    let s = *step;
    let (f1, f2) = (1.0 - s.beta_1, 1.0 - s.beta_2);
    let (m, v) = match moments {
        None => (grad.clone().mul_scalar(f1), grad.clone().square().mul_scalar(f2)),
        Some((m, v)) => (
            m.mul_scalar(s.beta_1).add(grad.clone().mul_scalar(f1)),
            v.mul_scalar(s.beta_2).add(grad.square().mul_scalar(f2)),
        ),
    };
    let param = match s.decoupled_decay {
        None => {
            let correction_2 = (1.0 - s.beta_2.powi(s.time)).sqrt();
            let factor = correction_2 / (1.0 - s.beta_1.powi(s.time));
            let delta = m.clone().mul_scalar(factor).div(v.clone().sqrt().add_scalar(s.epsilon * correction_2));
            param - delta.mul_scalar(s.lr)
        }
        Some(decay) => {
            let m_hat = m.clone().div_scalar(1.0 - s.beta_1.powi(s.time));
            let v_hat = v.clone().div_scalar(1.0 - s.beta_2.powi(s.time));
            let delta = m_hat.div(v_hat.sqrt().add_scalar(s.epsilon));
            let rate = s.lr * f64::from(decay);
            let decayed = if rate == 0.0 { param } else { param.mul_scalar(1.0 - rate) };
            decayed - delta.mul_scalar(s.lr)
        }
    };
    (param, m, v)
}

/// Keeps large freed blocks in the process instead of returning them to the kernel.
///
/// Training allocates and frees activations of up to 75 MB per layer and step. glibc serves
/// blocks that large with fresh `mmap`s, so every step page-faults and zero-fills hundreds of
/// megabytes again (`clear_page` was 7% of a profiled step). Raising the mmap and trim
/// thresholds lets the heap reuse them. A process-wide setting, so only binaries call it.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts glibc's thresholds; it is called before any worker threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Convolution → BatchNorm (running statistics) → LeakyReLU as one kernel call, for inference on
/// the fast path: BatchNorm and the activation are applied as the convolution's output is written.
/// `Err` gives the input back where it does not apply (gradient devices, other backends, fast path
/// off), and the caller runs the layers one by one.
#[allow(clippy::result_large_err)]
pub fn conv_block_inference(
    conv: &Conv2d,
    bn: &BatchNorm,
    act: &LeakyRelu,
    x: Tensor<4>,
) -> Result<Tensor<4>, Tensor<4>> {
    if !fast_for(&x) || x.device().is_autodiff() || act.negative_slope < 0.0 {
        return Err(x);
    }
    let weight = conv.weight.val();
    let [cout, _, kh, kw] = weight.dims();
    let bias = conv.bias.as_ref().map_or_else(|| Tensor::zeros([cout], &weight.device()), |b| b.val());
    let stats = [bn.running_mean.value(), bn.running_var.value()];
    let block = flex::ConvBlock {
        weight,
        bias,
        gamma: bn.gamma.val(),
        beta: bn.beta.val(),
        stats,
        epsilon: bn.epsilon as f32,
        padding: [kh / 2, kw / 2],
        slope: act.negative_slope as f32,
    };
    Ok(flex::conv_block(x, block))
}
