//! Fast CPU kernels for fer's models, plugged into burn through its backend-extension mechanism.
//!
//! Every function here takes and returns ordinary `burn::Tensor`s and runs on any device: on
//! burn's `flex` CPU backend (with or without autodiff) it uses fer's own kernels, anywhere else
//! (CUDA, other backends, non-`f32` tensors) the plain burn operation. The kernels are checked
//! against the plain path, outputs and gradients, by this crate's tests.
//!
//! [`set_fast_path`] switches the kernels off process-wide, which is how `fer bench` measures the
//! plain path in the same process and how a user rules them out when chasing a numerical question.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::DispatchDevice;
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Tensor};

pub mod conv;
mod flex;

static FAST_PATH: AtomicBool = AtomicBool::new(true);

/// Turns fer's own kernels on (the default) or off for the whole process.
pub fn set_fast_path(enabled: bool) {
    FAST_PATH.store(enabled, Ordering::Relaxed);
}

pub fn fast_path_enabled() -> bool {
    FAST_PATH.load(Ordering::Relaxed)
}

/// Whether fer's kernels will run for a tensor on this device with this dtype.
pub fn uses_fast_path(device: &burn::tensor::Device, dtype: DType) -> bool {
    fast_path_enabled() && dtype == DType::F32 && matches!(device.as_dispatch().clone().inner(), DispatchDevice::Flex(_))
}

/// 2-D convolution with stride 1 and dilation 1, `padding = [rows, columns]` on each side:
/// `x [n, cin, h, w]`, `weight [cout, cin, kh, kw]`, `bias [cout]`.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, padding: [usize; 2]) -> Tensor<4> {
    if !uses_fast_path(&x.device(), x.dtype()) || weight.dtype() != DType::F32 {
        return burn_conv2d(x, weight, bias, ConvOptions::new([1, 1], padding, [1, 1], 1));
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[0]], &weight.device()));
    flex::conv2d(x, weight, bias, padding)
}
