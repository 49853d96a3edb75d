//! Batch normalisation (batch statistics), LeakyReLU, dropout and 2x2 max-pooling on contiguous
//! `f32` buffers laid out `[n, channels, plane]` (plane = 1 for dense layers), forward and
//! backward. burn composes each of these from generic tensor operations, each a full pass with its
//! own allocation; here each is one or two passes, split across the cores by image.

use rayon::prelude::*;

use crate::scratch::scratch;

/// Elements per rayon task for flat element-wise loops.
const CHUNK: usize = 1 << 14;

/// LeakyReLU's derivative at `z` (`negative` below zero, 1 at and above it) without a branch:
/// real activations' signs are unpredictable, and a branch per element ran these passes 6-24x
/// slower than a copy of the same buffer (pointwise_bench).
#[inline(always)]
pub(crate) fn leaky_factor(z: f32, negative: f32) -> f32 {
    // All ones where z < 0 (not for -0.0 or NaN: the same as `if z < 0.0`).
    let below = 0u32.wrapping_sub(u32::from(z < 0.0));
    f32::from_bits((negative.to_bits() & below) | (1.0f32.to_bits() & !below))
}

multiversion! {
    /// `dst = v · k + b` with `v` from `src` (or `dst` itself), then `· slope` where negative
    /// when `slope` is given: the same operations as element by element, without a branch.
    pub(crate) fn affine_leaky_row(dst: &mut [f32], src: Option<&[f32]>, k: f32, b: f32, slope: Option<f32>) {
        // A factor of 1 leaves a value as it is, bit for bit.
        let negative = slope.unwrap_or(1.0);
        match src {
            Some(src) => {
                for (d, &v) in dst.iter_mut().zip(src) {
                    let v = v * k + b;
                    *d = v * leaky_factor(v, negative);
                }
            }
            None => {
                for d in dst.iter_mut() {
                    let v = *d * k + b;
                    *d = v * leaky_factor(v, negative);
                }
            }
        }
    }
}

/// Per-channel mean and biased variance (what burn's `batch_norm_train` returns).
pub fn channel_stats(x: &[f32], n: usize, c: usize, plane: usize) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), n * c * plane, "channel_stats: length");
    let count = (n * plane).max(1) as f64;
    let stats: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            // Two passes; each plane (2,304 values at most in the CNN) is summed in f32 lanes and
            // the planes in f64, which keeps the sums vectorised and exact enough.
            let planes = || (0..n).map(|i| &x[(i * c + ch) * plane..(i * c + ch + 1) * plane]);
            let mean = planes().map(|p| plane_sum(p) as f64).sum::<f64>() / count;
            let m = mean as f32;
            let var = planes().map(|p| plane_squared_deviation(p, m) as f64).sum::<f64>() / count;
            (mean as f32, var as f32)
        })
        .collect();
    stats.into_iter().unzip()
}

/// Lanes of independent f32 partial sums: a plain `iter().sum()` is one dependency chain (about
/// four cycles per element); sixteen chains let the compiler use vector adds.
const LANES: usize = 16;

#[inline(always)]
pub(crate) fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail
}

multiversion! {
    /// `Σ v` in [`LANES`] partial sums (compiled for AVX-512 too: generic code called from
    /// ordinary functions ran with baseline SSE, 2% of a training step).
    pub(crate) fn plane_sum(values: &[f32]) -> f32 {
        lane_sum(values, |v| v)
    }
}

multiversion! {
    /// `Σ (v - m)²` in [`LANES`] partial sums.
    fn plane_squared_deviation(values: &[f32], m: f32) -> f32 {
        lane_sum(values, |v| (v - m) * (v - m))
    }
}

/// BatchNorm as a per-channel affine map `x · scale + shift`, with `bias` (a preceding
/// convolution's) folded in when given. Forward and backward passes and the fused inference
/// block all use it, so they agree on every rounding.
pub fn batch_norm_affine(
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    bias: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma.iter().zip(var).map(|(&g, &v)| g / (v + eps).sqrt()).collect();
    let shift = (0..scale.len()).map(|c| (bias.map_or(0.0, |b| b[c]) - mean[c]) * scale[c] + beta[c]).collect();
    (scale, shift)
}

/// The layout of a tensor the channel-wise passes walk: `[n, c, plane]` row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planes {
    pub n: usize,
    pub c: usize,
    pub plane: usize,
}

/// One BatchNorm layer as its passes use it: the statistics it normalises with, its scale and
/// shift, and the LeakyReLU's slope when one follows in the same pass.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormParams<'a> {
    pub mean: &'a [f32],
    pub var: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
    pub slope: Option<f32>,
}

/// `y = (x - mean) / sqrt(var + eps) * gamma + beta`, followed by LeakyReLU with `slope` when
/// given, in the same pass.
pub fn batch_norm(x: &[f32], layout: Planes, bn: &BatchNormParams) -> Vec<f32> {
    let Planes { n, c, plane } = layout;
    let (scale, shift) = batch_norm_affine(bn.mean, bn.var, bn.gamma, bn.beta, bn.eps, None);
    let affine = ChannelAffine { scale: &scale, shift: &shift, negative: bn.slope.unwrap_or(1.0) };
    let mut y = scratch(n * c * plane);
    let plane = plane.max(1);
    let per_task = CHUNK.div_ceil(plane);
    y.par_chunks_mut(per_task * plane).zip(x.par_chunks(per_task * plane)).enumerate().for_each(|(t, (out, inp))| {
        affine_leaky(out, inp, t * per_task, plane, &affine);
    });
    y
}

/// `leaky(v · scale[c] + shift[c])` per channel `c`: `negative` is LeakyReLU's slope (1: none).
struct ChannelAffine<'a> {
    scale: &'a [f32],
    shift: &'a [f32],
    negative: f32,
}

multiversion! {
    /// `out = leaky(inp · scale + shift)` over whole planes, the first being plane `first` of the
    /// tensor (its channel is `plane index % c`).
    fn affine_leaky(out: &mut [f32], inp: &[f32], first: usize, plane: usize, affine: &ChannelAffine) {
        let (c, negative) = (affine.scale.len(), affine.negative);
        for (p, (out, inp)) in out.chunks_mut(plane).zip(inp.chunks(plane)).enumerate() {
            let ch = (first + p) % c;
            let (s, b) = (affine.scale[ch], affine.shift[ch]);
            for (o, &v) in out.iter_mut().zip(inp) {
                let z = v * s + b;
                *o = z * leaky_factor(z, negative);
            }
        }
    }
}

/// Gradients of [`batch_norm`] with batch statistics, `(dx, dgamma, dbeta)`. With `slope`, the
/// activation's gradient is applied to `dy` on the fly, recomputing the pre-activation from `x`,
/// so it is never stored.
pub fn batch_norm_backward(
    x: &[f32],
    dy: &[f32],
    layout: Planes,
    bn: &BatchNormParams,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Planes { n, c, plane } = layout;
    let BatchNormParams { mean, var, gamma, beta, eps, slope } = *bn;
    // Without an activation the factor is 1 everywhere.
    let negative = slope.unwrap_or(1.0);
    // d(activation)/dz, with z computed exactly as the forward pass did.
    let (scale, shift) = batch_norm_affine(mean, var, gamma, beta, eps, None);
    let count = (n * plane).max(1) as f64;
    let inv_std: Vec<f32> = (0..c).map(|ch| 1.0 / (var[ch] + eps).sqrt()).collect();
    let plane = plane.max(1);
    // Σ dy and Σ dy·x̂ per channel.
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let affine = [scale[ch], shift[ch], mean[ch], inv_std[ch]];
            (0..n).fold((0.0, 0.0), |(sd, sdx), i| {
                let r = (i * c + ch) * plane..(i * c + ch + 1) * plane;
                let (a, b) = bn_backward_plane_sums(&x[r.clone()], &dy[r], affine, negative);
                (sd + a as f64, sdx + b as f64)
            })
        })
        .collect();
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
    // Per channel: [scale, shift, mean, 1/std, gamma, mean dy, mean dy·x̂].
    let per_channel: Vec<[f32; 7]> = (0..c)
        .map(|ch| {
            [
                scale[ch],
                shift[ch],
                mean[ch],
                inv_std[ch],
                gamma[ch],
                (sums[ch].0 / count) as f32,
                (sums[ch].1 / count) as f32,
            ]
        })
        .collect();
    let mut dx = scratch(x.len());
    let per_task = CHUNK.div_ceil(plane);
    dx.par_chunks_mut(per_task * plane).enumerate().for_each(|(t, out)| {
        let r = t * per_task * plane..t * per_task * plane + out.len();
        bn_backward_dx(out, &x[r.clone()], &dy[r], t * per_task, plane, &per_channel, negative);
    });
    (dx, dgamma, dbeta)
}

multiversion! {
    /// Σ dy·f'(z) and Σ dy·f'(z)·x̂ over one plane, `affine = [scale, shift, mean, 1/std]`,
    /// in [`LANES`] independent partial sums.
    fn bn_backward_plane_sums(x: &[f32], dy: &[f32], affine: [f32; 4], negative: f32) -> (f32, f32) {
        let [s, b, m, is] = affine;
        let (mut sum_g, mut sum_gx) = ([0.0f32; LANES], [0.0f32; LANES]);
        let (xc, dc) = (x.chunks_exact(LANES), dy.chunks_exact(LANES));
        let (mut tail_g, mut tail_gx) = (0.0f32, 0.0f32);
        for (&xv, &d) in xc.remainder().iter().zip(dc.remainder()) {
            let g = d * leaky_factor(xv * s + b, negative);
            tail_g += g;
            tail_gx += g * (xv - m) * is;
        }
        for (xs, ds) in xc.zip(dc) {
            for k in 0..LANES {
                let g = ds[k] * leaky_factor(xs[k] * s + b, negative);
                sum_g[k] += g;
                sum_gx[k] += g * (xs[k] - m) * is;
            }
        }
        (sum_g.iter().sum::<f32>() + tail_g, sum_gx.iter().sum::<f32>() + tail_gx)
    }
}

multiversion! {
    /// The input gradient over whole planes, the first being plane `first` of the tensor.
    fn bn_backward_dx(
        out: &mut [f32],
        x: &[f32],
        dy: &[f32],
        first: usize,
        plane: usize,
        per_channel: &[[f32; 7]],
        negative: f32,
    ) {
        let c = per_channel.len();
        for (p, ((out, x), dy)) in out.chunks_mut(plane).zip(x.chunks(plane)).zip(dy.chunks(plane)).enumerate() {
            let [s, b, m, is, g, mean_dy, mean_dyx] = per_channel[(first + p) % c];
            for ((o, &xv), &d) in out.iter_mut().zip(x).zip(dy) {
                let xhat = (xv - m) * is;
                *o = g * is * (d * leaky_factor(xv * s + b, negative) - mean_dy - xhat * mean_dyx);
            }
        }
    }
}

pub fn leaky_relu(x: &[f32], slope: f32) -> Vec<f32> {
    let mut y = scratch(x.len());
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(o, i)| scale_by_leaky_factor(o, i, i, slope));
    y
}

/// `dx = dy` where the forward input was ≥ 0, `slope · dy` elsewhere (the sign of the output is
/// the sign of the input for a positive slope, so either may be passed).
pub fn leaky_relu_backward(x: &[f32], dy: &[f32], slope: f32) -> Vec<f32> {
    let mut dx = scratch(x.len());
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(o, (i, g))| scale_by_leaky_factor(o, i, g, slope));
    dx
}

multiversion! {
    /// `out = values · f'(signs)`: the forward pass passes the input twice, the backward pass the
    /// input and the output gradient.
    fn scale_by_leaky_factor(out: &mut [f32], signs: &[f32], values: &[f32], slope: f32) {
        for ((o, &z), &v) in out.iter_mut().zip(signs).zip(values) {
            *o = v * leaky_factor(z, slope);
        }
    }
}

/// Whether element `index` is kept by the dropout mask of `seed`: a counter-based hash, so the
/// backward pass regenerates the mask instead of storing it and any split across threads draws
/// the same mask.
#[inline(always)]
pub fn dropout_keeps(seed: u64, index: u64, keep: f32) -> bool {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 40) as f32) * (1.0 / (1u64 << 24) as f32) < keep
}

/// Inverted dropout: kept elements scaled by `1 / keep`, the rest zero. The backward pass is the
/// same function applied to the output gradient.
pub fn dropout(x: &[f32], seed: u64, prob: f32) -> Vec<f32> {
    let (keep, scale) = keep_and_scale(prob);
    let mut y = scratch(x.len());
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(|(k, (o, i))| {
        let base = (k * CHUNK) as u64;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
            // SAFETY: the CPU has the features this copy was compiled for.
            unsafe { dropout_chunk_avx512(o, i, seed, base, keep, scale) };
            return;
        }
        dropout_chunk(o, i, seed, base, keep, scale);
    });
    y
}

/// Inverted dropout's keep probability and the scale of kept elements.
pub(crate) fn keep_and_scale(prob: f32) -> (f32, f32) {
    let keep = 1.0 - prob;
    (keep, if keep > 0.0 { 1.0 / keep } else { 0.0 })
}

/// [`dropout`]'s mask applied in place to `values`, the first of which is element `first`.
#[inline(always)]
pub(crate) fn drop_in_place(values: &mut [f32], seed: u64, first: u64, keep: f32, scale: f32) {
    for (j, v) in values.iter_mut().enumerate() {
        *v = if dropout_keeps(seed, first + j as u64, keep) { *v * scale } else { 0.0 };
    }
}

/// The hash's 64-bit multiplies vectorise only with AVX-512DQ (`vpmullq`); the same code compiled
/// for it gives the same mask, so results do not depend on the CPU.
#[inline(always)]
fn dropout_chunk(out: &mut [f32], x: &[f32], seed: u64, base: u64, keep: f32, scale: f32) {
    for (j, (o, &v)) in out.iter_mut().zip(x).enumerate() {
        *o = if dropout_keeps(seed, base + j as u64, keep) { v * scale } else { 0.0 };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn dropout_chunk_avx512(out: &mut [f32], x: &[f32], seed: u64, base: u64, keep: f32, scale: f32) {
    dropout_chunk(out, x, seed, base, keep, scale)
}

/// 2x2 max-pooling with stride 2 over `[planes, h, w]` (odd trailing rows/columns dropped, as
/// burn's and Keras' "valid" pooling do). Ties go to the first element in row-major order.
pub fn max_pool2x2(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut y = scratch(planes * oh * ow);
    // Whole planes per task, about CHUNK outputs each (a 6x6 map's plane is 9 outputs).
    let per_task = (CHUNK / (oh * ow).max(1)).max(1);
    y.par_chunks_mut((per_task * oh * ow).max(1)).enumerate().for_each(|(t, out)| {
        let first = t * per_task;
        let count = out.len() / (oh * ow).max(1);
        max_pool_planes(out, &x[first * h * w..(first + count) * h * w], h, w);
    });
    y
}

multiversion! {
    /// [`max_pool2x2`] over whole planes.
    fn max_pool_planes(out: &mut [f32], inp: &[f32], h: usize, w: usize) {
        let (oh, ow) = (h / 2, w / 2);
        for (out, inp) in out.chunks_mut((oh * ow).max(1)).zip(inp.chunks(h * w)) {
            for oy in 0..oh {
                let (r0, r1) = (&inp[2 * oy * w..2 * oy * w + w], &inp[(2 * oy + 1) * w..(2 * oy + 1) * w + w]);
                for (ox, o) in out[oy * ow..(oy + 1) * ow].iter_mut().enumerate() {
                    let (a, b, c, d) = (r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
                    *o = a.max(b).max(c.max(d));
                }
            }
        }
    }
}

/// Routes each output gradient to the position [`max_pool2x2`] took its maximum from.
pub fn max_pool2x2_backward(x: &[f32], dy: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    assert_eq!(x.len(), planes * h * w, "max_pool2x2_backward: input length");
    let (oh, ow) = (h / 2, w / 2);
    let mut dx = scratch(x.len());
    let per_task = (CHUNK / (h * w).max(1)).max(1);
    dx.par_chunks_mut((per_task * h * w).max(1)).enumerate().for_each(|(t, out)| {
        let first = t * per_task;
        let planes = out.len() / (h * w).max(1);
        max_pool_backward_planes(
            out,
            &x[first * h * w..(first + planes) * h * w],
            &dy[first * oh * ow..(first + planes) * oh * ow],
            h,
            w,
        );
    });
    dx
}

multiversion! {
    /// [`max_pool2x2_backward`] over whole planes, every element of `out` written.
    fn max_pool_backward_planes(out: &mut [f32], x: &[f32], dy: &[f32], h: usize, w: usize) {
        let (oh, ow) = (h / 2, w / 2);
        let pick = |win: bool, g: f32| if win { g } else { 0.0 };
        for (p, (out, inp)) in out.chunks_mut(h * w).zip(x.chunks(h * w)).enumerate() {
            let g = &dy[p * oh * ow..(p + 1) * oh * ow];
            // Odd trailing rows and columns belong to no window.
            out[2 * oh * w..].fill(0.0);
            for oy in 0..oh {
                let (r0, r1) = (&inp[2 * oy * w..2 * oy * w + w], &inp[(2 * oy + 1) * w..(2 * oy + 2) * w]);
                let (top, bottom) = out[2 * oy * w..(2 * oy + 2) * w].split_at_mut(w);
                let g = &g[oy * ow..(oy + 1) * ow];
                for ox in 0..ow {
                    let (a, b, c, d) = (r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
                    // The first maximum in row-major order takes the gradient, as in the forward pass.
                    let wins_a = a >= b && a >= c && a >= d;
                    let wins_b = !wins_a && b >= c && b >= d;
                    let wins_c = !wins_a && !wins_b && c >= d;
                    let wins_d = !wins_a && !wins_b && !wins_c;
                    top[2 * ox] = pick(wins_a, g[ox]);
                    top[2 * ox + 1] = pick(wins_b, g[ox]);
                    bottom[2 * ox] = pick(wins_c, g[ox]);
                    bottom[2 * ox + 1] = pick(wins_d, g[ox]);
                }
                top[2 * ow..].fill(0.0);
                bottom[2 * ow..].fill(0.0);
            }
        }
    }
}
