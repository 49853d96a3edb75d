//! The glue between the raw kernels ([`crate::conv`], [`crate::pointwise`]) and burn: an
//! extension trait implemented for `Flex` and for `Autodiff<Flex>`, whose backward passes call
//! the kernels' backward functions.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Dispatch, Flex, backend_extension};
use burn::tensor::{Shape, Tensor, TensorData};

use crate::adam::AdamStep;
use crate::conv::{self, ConvShape, Finish, GradientsWanted};
use crate::dense::{self as dense_kernel, DenseShape, DropoutMask, Epilogue};
use crate::pointwise::{BatchNormParams, Planes};
use crate::{pointwise, profile};

#[backend_extension(Flex, Autodiff)]
// The extension macro dispatches each tensor as an argument of its own, so the fused conv block
// (eleven) cannot take a struct here; `conv_block` below gives callers one.
#[allow(clippy::too_many_arguments)]
pub trait FerKernels: burn::backend::Backend {
    fn fer_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self>;
    /// `x · weight + bias`, then LeakyReLU (`slope`) and dropout (`dropout_prob > 0`, its mask
    /// from `dropout_seed`) when given ([`crate::dense`]).
    fn fer_dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        slope: Option<f32>,
        dropout_seed: u64,
        dropout_prob: f32,
    ) -> FloatTensor<Self>;
    /// Convolution, BatchNorm with the given `mean` and `var`, and LeakyReLU in one pass over the
    /// output. Inference only: no gradient.
    fn fer_conv_block(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f32,
        pad_h: usize,
        pad_w: usize,
        slope: f32,
    ) -> FloatTensor<Self>;
    /// Per-channel mean (row 0) and biased variance (row 1) of `[n, c, ...]`; never tracked.
    fn fer_bn_stats(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Batch normalisation with the given `stats` (from `fer_bn_stats`), then LeakyReLU when
    /// `slope` is given, in one pass each way. Its gradient treats `stats` as the batch's own
    /// (their dependence on `x` included), so on a gradient device `stats` must be the batch's.
    fn fer_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f32,
        slope: Option<f32>,
    ) -> FloatTensor<Self>;
    fn fer_leaky_relu(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self>;
    fn fer_dropout(x: FloatTensor<Self>, seed: u64, prob: f32) -> FloatTensor<Self>;
    fn fer_max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// One Adam(W) step ([`crate::adam`]); never tracked. Returns (param, moment_1, moment_2).
    fn fer_adam(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        first: bool,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

pub fn adam<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    first: bool,
    s: &AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (p, m, v) = <Dispatch as FerKernels>::fer_adam(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        first,
        *s,
    );
    (Tensor::from_dispatch(p), Tensor::from_dispatch(m), Tensor::from_dispatch(v))
}

/// `t` as a contiguous buffer of its own at offset 0 (copied only when it is not one).
fn owned_contiguous(t: FlexTensor) -> FlexTensor {
    let len: usize = dims(&t).iter().product();
    if t.layout().contiguous_offsets() == Some((0, len)) { t } else { t.to_contiguous() }
}

/// An inference conv block's layers as tensors: the convolution, BatchNorm's running statistics
/// `[mean, var]` and affine, and the LeakyReLU's slope.
pub struct ConvBlock {
    pub weight: Tensor<4>,
    pub bias: Tensor<1>,
    pub gamma: Tensor<1>,
    pub beta: Tensor<1>,
    pub stats: [Tensor<1>; 2],
    pub epsilon: f32,
    pub padding: [usize; 2],
    pub slope: f32,
}

pub fn conv_block(x: Tensor<4>, block: ConvBlock) -> Tensor<4> {
    let ConvBlock { weight, bias, gamma, beta, stats: [mean, var], epsilon, padding, slope } = block;
    Tensor::from_dispatch(<Dispatch as FerKernels>::fer_conv_block(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        mean.into_dispatch(),
        var.into_dispatch(),
        epsilon,
        padding[0],
        padding[1],
        slope,
    ))
}

pub fn bn_stats<const D: usize>(x: Tensor<D>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FerKernels>::fer_bn_stats(x.into_dispatch()))
}

pub fn batch_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    stats: Tensor<2>,
    epsilon: f32,
    slope: Option<f32>,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FerKernels>::fer_batch_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        stats.into_dispatch(),
        epsilon,
        slope,
    ))
}

pub fn leaky_relu<const D: usize>(x: Tensor<D>, slope: f32) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FerKernels>::fer_leaky_relu(x.into_dispatch(), slope))
}

pub fn dropout<const D: usize>(x: Tensor<D>, seed: u64, prob: f32) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FerKernels>::fer_dropout(x.into_dispatch(), seed, prob))
}

pub fn max_pool2x2(x: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FerKernels>::fer_max_pool2x2(x.into_dispatch()))
}

pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, padding: [usize; 2]) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FerKernels>::fer_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        padding[0],
        padding[1],
    ))
}

pub fn dense(
    x: Tensor<2>,
    weight: Tensor<2>,
    bias: Tensor<1>,
    slope: Option<f32>,
    dropout: Option<DropoutMask>,
) -> Tensor<2> {
    let (seed, prob) = dropout.map_or((0, 0.0), |d| (d.seed, d.prob));
    Tensor::from_dispatch(<Dispatch as FerKernels>::fer_dense(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        slope,
        seed,
        prob,
    ))
}

fn epilogue(slope: Option<f32>, seed: u64, prob: f32) -> Epilogue {
    Epilogue { slope, dropout: (prob > 0.0).then_some(DropoutMask { seed, prob }) }
}

fn dense_shape(x: &FlexTensor, w: &FlexTensor) -> DenseShape {
    let (xd, wd) = (dims(x), dims(w));
    assert!(xd.len() == 2 && wd.len() == 2 && xd[1] == wd[0], "fer dense: input {xd:?} and weight {wd:?} do not fit");
    DenseShape { batch: xd[0], inputs: wd[0], outputs: wd[1] }
}

/// A profile row's shape: `inputs->outputs`.
fn dense_label(s: &DenseShape) -> String {
    format!("{}->{}", s.inputs, s.outputs)
}

/// The tensor's elements in row-major order (copied only when the tensor is a strided view).
fn contiguous(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) if t.is_contiguous() => std::borrow::Cow::Borrowed(s),
        _ => std::borrow::Cow::Owned(profile::time(
            "copy of a strided view",
            || act_label(&dims(t)),
            || t.to_contiguous().as_slice::<f32>().map(<[f32]>::to_vec).unwrap_or_default(),
        )),
    }
}

fn tensor(values: Vec<f32>, dims: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, Shape::from(dims.to_vec())))
}

fn shape_of(x: &FlexTensor, w: &FlexTensor, pad_h: usize, pad_w: usize) -> ConvShape {
    let xd = x.layout().shape().to_vec();
    let wd = w.layout().shape().to_vec();
    assert!(xd.len() == 4 && wd.len() == 4 && xd[1] == wd[1], "fer conv2d: input {xd:?} and weight {wd:?} do not fit");
    ConvShape { n: xd[0], cin: xd[1], h: xd[2], w: xd[3], cout: wd[0], kh: wd[2], kw: wd[3], pad_h, pad_w }
}

fn dims(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

/// A profile row's shape: `cin->cout kxk @hxw`.
fn conv_label(s: &ConvShape) -> String {
    format!("{}->{} {}x{} @{}x{}", s.cin, s.cout, s.kh, s.kw, s.h, s.w)
}

/// A profile row's shape: the dimensions after the batch, `64x48x48`.
fn act_label(d: &[usize]) -> String {
    d.iter().skip(1).map(|v| v.to_string()).collect::<Vec<_>>().join("x")
}

/// `(n, channels, plane)` of an `[n, c, ...]` tensor.
fn ncp(d: &[usize]) -> (usize, usize, usize) {
    (d[0], d.get(1).copied().unwrap_or(1), d.iter().skip(2).product())
}

fn stats_of(stats: &FlexTensor, c: usize) -> (Vec<f32>, Vec<f32>) {
    let s = contiguous(stats);
    (s[..c].to_vec(), s[c..2 * c].to_vec())
}

/// Weights packed for fer's own GEMM, one entry per weight buffer seen at inference.
struct Packed {
    /// Held so that the buffer is neither freed (its address reused) nor written in place while
    /// the entry lives: flex copies shared storage before writing to it.
    weight: FlexTensor,
    shape: ConvShape,
    packed: std::sync::Arc<crate::gemm::PackedA>,
}

/// Most weight buffers remembered: five convolutions a model, an ensemble of five, and spare.
const PACKED_ENTRIES: usize = 32;

static PACKED: std::sync::Mutex<Vec<Packed>> = std::sync::Mutex::new(Vec::new());

/// `weight` packed once per buffer (inference reuses a loaded model's weights for every batch:
/// packing the CNN's weights was a fifth of its batch-1 latency); `None` where the convolution
/// does not use packed weights.
fn packed_weights(weight: &FlexTensor, s: &ConvShape) -> Option<std::sync::Arc<crate::gemm::PackedA>> {
    let w = match contiguous(weight) {
        std::borrow::Cow::Borrowed(w) => w,
        std::borrow::Cow::Owned(_) => return None,
    };
    let key = ConvShape { n: 0, ..*s };
    let mode = crate::gemm::kernel();
    let same =
        |e: &Packed| e.shape == key && Some(e.packed.mode()) == mode && contiguous(&e.weight).as_ptr() == w.as_ptr();
    let mut cache = PACKED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = cache.iter().find(|e| same(e)) {
        return Some(e.packed.clone());
    }
    let packed = std::sync::Arc::new(conv::pack_weights(w, s)?);
    if cache.len() == PACKED_ENTRIES {
        cache.remove(0);
    }
    cache.push(Packed { weight: weight.clone(), shape: key, packed: packed.clone() });
    Some(packed)
}

impl FerKernels for Flex {
    fn fer_conv_block(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        epsilon: f32,
        pad_h: usize,
        pad_w: usize,
        slope: f32,
    ) -> FlexTensor {
        let s = shape_of(&x, &weight, pad_h, pad_w);
        let (scale, shift) = pointwise::batch_norm_affine(
            &contiguous(&mean),
            &contiguous(&var),
            &contiguous(&gamma),
            &contiguous(&beta),
            epsilon,
            Some(&contiguous(&bias)),
        );
        let packed = packed_weights(&weight, &s);
        let y = profile::time(
            "conv block (inference)",
            || conv_label(&s),
            || {
                let finish = Finish { scale: Some(&scale), shift: Some(&shift), slope: Some(slope) };
                conv::forward_prepacked(&contiguous(&x), &contiguous(&weight), packed.as_deref(), &finish, &s)
            },
        );
        tensor(y, &[s.n, s.cout, s.out_h(), s.out_w()])
    }

    fn fer_bn_stats(x: FlexTensor) -> FlexTensor {
        let d = dims(&x);
        let (n, c, plane) = ncp(&d);
        let (mut mean, var) = profile::time(
            "batchnorm statistics",
            || act_label(&d),
            || pointwise::channel_stats(&contiguous(&x), n, c, plane),
        );
        mean.extend(var);
        tensor(mean, &[2, c])
    }

    fn fer_batch_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        stats: FlexTensor,
        epsilon: f32,
        slope: Option<f32>,
    ) -> FlexTensor {
        let d = dims(&x);
        let (n, c, plane) = ncp(&d);
        let (mean, var) = stats_of(&stats, c);
        let op = if slope.is_some() { "batchnorm+leaky forward" } else { "batchnorm forward" };
        let y = profile::time(
            op,
            || act_label(&d),
            || {
                let (gamma, beta) = (contiguous(&gamma), contiguous(&beta));
                let bn = BatchNormParams { mean: &mean, var: &var, gamma: &gamma, beta: &beta, eps: epsilon, slope };
                pointwise::batch_norm(&contiguous(&x), Planes { n, c, plane }, &bn)
            },
        );
        tensor(y, &d)
    }

    fn fer_leaky_relu(x: FlexTensor, slope: f32) -> FlexTensor {
        let d = dims(&x);
        tensor(
            profile::time("leaky relu forward", || act_label(&d), || pointwise::leaky_relu(&contiguous(&x), slope)),
            &d,
        )
    }

    fn fer_dropout(x: FlexTensor, seed: u64, prob: f32) -> FlexTensor {
        let d = dims(&x);
        tensor(
            profile::time("dropout forward", || act_label(&d), || pointwise::dropout(&contiguous(&x), seed, prob)),
            &d,
        )
    }

    fn fer_max_pool2x2(x: FlexTensor) -> FlexTensor {
        let d = dims(&x);
        let y = profile::time(
            "max pool forward",
            || act_label(&d),
            || pointwise::max_pool2x2(&contiguous(&x), d[0] * d[1], d[2], d[3]),
        );
        tensor(y, &[d[0], d[1], d[2] / 2, d[3] / 2])
    }

    fn fer_adam(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        first: bool,
        step: AdamStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let d = dims(&param);
        // Updated in place where the tensors own their buffers (copied first where shared).
        let (mut p, mut m, mut v) = (owned_contiguous(param), owned_contiguous(moment_1), owned_contiguous(moment_2));
        let len = d.iter().product::<usize>();
        profile::time(
            "adam",
            || d.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("x"),
            || {
                crate::adam::adam_update(
                    &mut p.storage_mut::<f32>()[..len],
                    &contiguous(&grad),
                    &mut m.storage_mut::<f32>()[..len],
                    &mut v.storage_mut::<f32>()[..len],
                    first,
                    &step,
                )
            },
        );
        (p, m, v)
    }

    fn fer_conv2d(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, pad_h: usize, pad_w: usize) -> FlexTensor {
        let s = shape_of(&x, &weight, pad_h, pad_w);
        let y = profile::time(
            "conv forward",
            || conv_label(&s),
            || conv::forward(&contiguous(&x), &contiguous(&weight), Some(&contiguous(&bias)), &s),
        );
        tensor(y, &[s.n, s.cout, s.out_h(), s.out_w()])
    }

    fn fer_dense(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        slope: Option<f32>,
        dropout_seed: u64,
        dropout_prob: f32,
    ) -> FlexTensor {
        let s = dense_shape(&x, &weight);
        let e = epilogue(slope, dropout_seed, dropout_prob);
        let y = profile::time(
            "dense forward",
            || dense_label(&s),
            || dense_kernel::forward(&contiguous(&x), &contiguous(&weight), &contiguous(&bias), &s, &e),
        );
        tensor(y, &[s.batch, s.outputs])
    }
}

#[derive(Debug)]
struct DenseBackward;

impl Backward<Flex, 3> for DenseBackward {
    /// Input, weight, the output where the epilogue needs it, and the epilogue.
    type State = (FlexTensor, FlexTensor, Option<FlexTensor>, Epilogue);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy: FlexTensor = grads.consume::<Flex>(&ops.node);
        let (x, weight, y, e) = ops.state;
        let s = dense_shape(&x, &weight);
        let y = y.as_ref().map(contiguous);
        let g = profile::time(
            "dense backward",
            || dense_label(&s),
            || {
                let want =
                    GradientsWanted { input: node_x.is_some(), weight: node_w.is_some(), bias: node_b.is_some() };
                dense_kernel::backward(
                    &contiguous(&x),
                    &contiguous(&weight),
                    y.as_deref().unwrap_or(&[]),
                    &contiguous(&dy),
                    &s,
                    &e,
                    want,
                )
            },
        );
        if let (Some(node), Some(dx)) = (node_x, g.dx) {
            grads.register::<Flex>(node.id, tensor(dx, &[s.batch, s.inputs]));
        }
        if let (Some(node), Some(dw)) = (node_w, g.dw) {
            grads.register::<Flex>(node.id, tensor(dw, &[s.inputs, s.outputs]));
        }
        if let (Some(node), Some(db)) = (node_b, g.db) {
            grads.register::<Flex>(node.id, tensor(db, &[s.outputs]));
        }
    }
}

#[derive(Debug)]
struct Conv2dBackward;

impl Backward<Flex, 3> for Conv2dBackward {
    type State = (FlexTensor, FlexTensor, usize, usize);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy: FlexTensor = grads.consume::<Flex>(&ops.node);
        let (x, weight, pad_h, pad_w) = ops.state;
        let s = shape_of(&x, &weight, pad_h, pad_w);
        let g = profile::time(
            "conv backward",
            || conv_label(&s),
            || {
                let want =
                    GradientsWanted { input: node_x.is_some(), weight: node_w.is_some(), bias: node_b.is_some() };
                conv::backward(&contiguous(&x), &contiguous(&weight), &contiguous(&dy), &s, want)
            },
        );
        if let (Some(node), Some(dx)) = (node_x, g.dx) {
            grads.register::<Flex>(node.id, tensor(dx, &[s.n, s.cin, s.h, s.w]));
        }
        if let (Some(node), Some(dw)) = (node_w, g.dw) {
            grads.register::<Flex>(node.id, tensor(dw, &[s.cout, s.cin, s.kh, s.kw]));
        }
        if let (Some(node), Some(db)) = (node_b, g.db) {
            grads.register::<Flex>(node.id, tensor(db, &[s.cout]));
        }
    }
}

impl<C: CheckpointStrategy> FerKernels for Autodiff<Flex, C> {
    fn fer_conv_block(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f32,
        pad_h: usize,
        pad_w: usize,
        slope: f32,
    ) -> FloatTensor<Self> {
        // Never called on a gradient device (see `conv_block_inference`); computed without a
        // graph, as a constant, if it is.
        FloatTensor::<Self>::new(Flex::fer_conv_block(
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            mean.into_primitive(),
            var.into_primitive(),
            epsilon,
            pad_h,
            pad_w,
            slope,
        ))
    }

    fn fer_bn_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // Statistics are constants to everything downstream (fer_batch_norm differentiates
        // through them itself), so this node never receives a gradient.
        match StatsBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((), Flex::fer_bn_stats(x.into_primitive())),
            OpsKind::UnTracked(prep) => prep.finish(Flex::fer_bn_stats(x.into_primitive())),
        }
    }

    fn fer_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f32,
        slope: Option<f32>,
    ) -> FloatTensor<Self> {
        let stats = stats.into_primitive();
        match BatchNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, gamma, beta) = (x.into_primitive(), gamma.into_primitive(), beta.into_primitive());
                let y = Flex::fer_batch_norm(x.clone(), gamma.clone(), beta.clone(), stats.clone(), epsilon, slope);
                prep.finish((x, gamma, beta, stats, epsilon, slope), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::fer_batch_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                stats,
                epsilon,
                slope,
            )),
        }
    }

    fn fer_leaky_relu(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self> {
        // The output has the input's sign (slope > 0), so it is what the backward pass keeps.
        unary::<C>(x, |x| Flex::fer_leaky_relu(x, slope), leaky_relu_grad, false, slope, 0)
    }

    fn fer_dropout(x: FloatTensor<Self>, seed: u64, prob: f32) -> FloatTensor<Self> {
        unary::<C>(x, |x| Flex::fer_dropout(x, seed, prob), dropout_grad, false, prob, seed)
    }

    fn fer_max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        unary::<C>(x, Flex::fer_max_pool2x2, max_pool_grad, true, 0.0, 0)
    }

    fn fer_adam(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        first: bool,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Optimizers work on the parameters' inner tensors; on a gradient device this is a
        // constant computation, as in `fer_conv_block`.
        let (p, m, v) = Flex::fer_adam(
            param.into_primitive(),
            grad.into_primitive(),
            moment_1.into_primitive(),
            moment_2.into_primitive(),
            first,
            step,
        );
        (FloatTensor::<Self>::new(p), FloatTensor::<Self>::new(m), FloatTensor::<Self>::new(v))
    }

    fn fer_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self> {
        match Conv2dBackward.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, weight, bias) = (x.into_primitive(), weight.into_primitive(), bias.into_primitive());
                let y = Flex::fer_conv2d(x.clone(), weight.clone(), bias, pad_h, pad_w);
                prep.finish((x, weight, pad_h, pad_w), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::fer_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                pad_h,
                pad_w,
            )),
        }
    }

    fn fer_dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        slope: Option<f32>,
        dropout_seed: u64,
        dropout_prob: f32,
    ) -> FloatTensor<Self> {
        match DenseBackward.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, weight, bias) = (x.into_primitive(), weight.into_primitive(), bias.into_primitive());
                let e = epilogue(slope, dropout_seed, dropout_prob);
                let y = Flex::fer_dense(x.clone(), weight.clone(), bias, slope, dropout_seed, dropout_prob);
                let saved = e.needs_output().then(|| y.clone());
                prep.finish((x, weight, saved, e), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::fer_dense(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                slope,
                dropout_seed,
                dropout_prob,
            )),
        }
    }
}

#[derive(Debug)]
struct StatsBackward;

impl Backward<Flex, 1> for StatsBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let _ = grads.consume::<Flex>(&ops.node);
    }
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    /// Input, gamma, beta, statistics, epsilon and the fused LeakyReLU's slope (if any).
    type State = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, f32, Option<f32>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy: FlexTensor = grads.consume::<Flex>(&ops.node);
        let (x, gamma, beta, stats, epsilon, slope) = ops.state;
        let d = dims(&x);
        let (n, c, plane) = ncp(&d);
        let (mean, var) = stats_of(&stats, c);
        let op = if slope.is_some() { "batchnorm+leaky backward" } else { "batchnorm backward" };
        let (dx, dgamma, dbeta) = profile::time(
            op,
            || act_label(&d),
            || {
                let (gamma, beta) = (contiguous(&gamma), contiguous(&beta));
                let bn = BatchNormParams { mean: &mean, var: &var, gamma: &gamma, beta: &beta, eps: epsilon, slope };
                pointwise::batch_norm_backward(&contiguous(&x), &contiguous(&dy), Planes { n, c, plane }, &bn)
            },
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(dx, &d));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, tensor(dgamma, &[c]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, tensor(dbeta, &[c]));
        }
    }
}

/// Backward of a one-input operation whose input gradient is a function of the saved tensor and
/// the output gradient.
#[derive(Debug)]
struct UnaryBackward {
    grad: fn(&FlexTensor, &FlexTensor, f32, u64) -> FlexTensor,
}

impl Backward<Flex, 1> for UnaryBackward {
    type State = (FlexTensor, f32, u64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy: FlexTensor = grads.consume::<Flex>(&ops.node);
        let (saved, scalar, seed) = ops.state;
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, (self.grad)(&saved, &dy, scalar, seed));
        }
    }
}

fn unary<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    forward: impl FnOnce(FlexTensor) -> FlexTensor,
    grad: fn(&FlexTensor, &FlexTensor, f32, u64) -> FlexTensor,
    save_input: bool,
    scalar: f32,
    seed: u64,
) -> FloatTensor<Autodiff<Flex, C>> {
    match (UnaryBackward { grad }).prepare::<C>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let x = x.into_primitive();
            if save_input {
                let y = forward(x.clone());
                prep.finish((x, scalar, seed), y)
            } else {
                let y = forward(x);
                // The output is saved (dropout needs nothing but its seed; it keeps the shape).
                prep.finish((y.clone(), scalar, seed), y)
            }
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.into_primitive())),
    }
}

fn leaky_relu_grad(x: &FlexTensor, dy: &FlexTensor, slope: f32, _: u64) -> FlexTensor {
    let d = dims(dy);
    tensor(
        profile::time(
            "leaky relu backward",
            || act_label(&d),
            || pointwise::leaky_relu_backward(&contiguous(x), &contiguous(dy), slope),
        ),
        &d,
    )
}

fn dropout_grad(_: &FlexTensor, dy: &FlexTensor, prob: f32, seed: u64) -> FlexTensor {
    let d = dims(dy);
    tensor(profile::time("dropout backward", || act_label(&d), || pointwise::dropout(&contiguous(dy), seed, prob)), &d)
}

fn max_pool_grad(x: &FlexTensor, dy: &FlexTensor, _: f32, _: u64) -> FlexTensor {
    let d = dims(x);
    let dx = profile::time(
        "max pool backward",
        || act_label(&d),
        || pointwise::max_pool2x2_backward(&contiguous(x), &contiguous(dy), d[0] * d[1], d[2], d[3]),
    );
    tensor(dx, &d)
}
