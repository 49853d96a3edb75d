//! Batch normalisation (batch statistics), LeakyReLU, dropout and 2x2 max-pooling on contiguous
//! `f32` buffers laid out `[n, channels, plane]` (plane = 1 for dense layers), forward and
//! backward. burn composes each of these from generic tensor operations, each a full pass with its
//! own allocation; here each is one or two passes, split across the cores by image.

use rayon::prelude::*;

use crate::conv::scratch;

/// Elements per rayon task for flat element-wise loops.
const CHUNK: usize = 1 << 14;

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
            let mean = planes().map(|p| lane_sum(p, |v| v) as f64).sum::<f64>() / count;
            let m = mean as f32;
            let var = planes().map(|p| lane_sum(p, |v| (v - m) * (v - m)) as f64).sum::<f64>() / count;
            (mean as f32, var as f32)
        })
        .collect();
    stats.into_iter().unzip()
}

/// Lanes of independent f32 partial sums: a plain `iter().sum()` is one dependency chain (about
/// four cycles per element); sixteen chains let the compiler use vector adds.
const LANES: usize = 16;

fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
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

/// Two sums at once over paired slices, `f` giving both terms.
fn lane_sum2(xs: &[f32], ys: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f32, f32) {
    let (mut a, mut b) = ([0.0f32; LANES], [0.0f32; LANES]);
    let (xc, yc) = (xs.chunks_exact(LANES), ys.chunks_exact(LANES));
    let (mut ta, mut tb) = (0.0f32, 0.0f32);
    for (&x, &y) in xc.remainder().iter().zip(yc.remainder()) {
        let (p, q) = f(x, y);
        ta += p;
        tb += q;
    }
    for (cx, cy) in xc.zip(yc) {
        for k in 0..LANES {
            let (p, q) = f(cx[k], cy[k]);
            a[k] += p;
            b[k] += q;
        }
    }
    (a.iter().sum::<f32>() + ta, b.iter().sum::<f32>() + tb)
}

/// BatchNorm as a per-channel affine map `x · scale + shift`, with `bias` (a preceding
/// convolution's) folded in when given. Forward and backward passes and the fused inference
/// block all use it, so they agree on every rounding.
pub fn batch_norm_affine(mean: &[f32], var: &[f32], gamma: &[f32], beta: &[f32], eps: f32, bias: Option<&[f32]>) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma.iter().zip(var).map(|(&g, &v)| g / (v + eps).sqrt()).collect();
    let shift = (0..scale.len()).map(|c| (bias.map_or(0.0, |b| b[c]) - mean[c]) * scale[c] + beta[c]).collect();
    (scale, shift)
}

/// `y = (x - mean) / sqrt(var + eps) * gamma + beta`, followed by LeakyReLU with `slope` when
/// given, in the same pass.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    x: &[f32],
    n: usize,
    c: usize,
    plane: usize,
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    slope: Option<f32>,
) -> Vec<f32> {
    let negative = slope.unwrap_or(1.0);
    let (scale, shift) = batch_norm_affine(mean, var, gamma, beta, eps, None);
    let mut y = scratch(n * c * plane);
    y.par_chunks_mut(plane.max(1)).zip(x.par_chunks(plane.max(1))).enumerate().with_min_len(CHUNK / plane.max(1) + 1).for_each(|(i, (out, inp))| {
        let ch = i % c;
        let (s, b) = (scale[ch], shift[ch]);
        for (o, &v) in out.iter_mut().zip(inp) {
            let z = v * s + b;
            *o = if z < 0.0 { z * negative } else { z };
        }
    });
    y
}

/// Gradients of [`batch_norm`] with batch statistics, `(dx, dgamma, dbeta)`. With `slope`, the
/// activation's gradient is applied to `dy` on the fly, recomputing the pre-activation from `x`,
/// so it is never stored.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    x: &[f32],
    dy: &[f32],
    n: usize,
    c: usize,
    plane: usize,
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    slope: Option<f32>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let negative = slope.unwrap_or(1.0);
    // d(activation)/dz, with z computed exactly as the forward pass did.
    let (scale, shift) = batch_norm_affine(mean, var, gamma, beta, eps, None);
    let act = |xv: f32, ch: usize| {
        if slope.is_some() && xv * scale[ch] + shift[ch] < 0.0 { negative } else { 1.0 }
    };
    let count = (n * plane).max(1) as f64;
    let inv_std: Vec<f32> = (0..c).map(|ch| 1.0 / (var[ch] + eps).sqrt()).collect();
    // Σ dy and Σ dy·x̂ per channel.
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (m, is) = (mean[ch], inv_std[ch]);
            (0..n).fold((0.0, 0.0), |(sd, sdx), i| {
                let r = (i * c + ch) * plane..(i * c + ch + 1) * plane;
                let (a, b) = lane_sum2(&x[r.clone()], &dy[r], |xv, g| {
                    let g = g * act(xv, ch);
                    (g, g * (xv - m) * is)
                });
                (sd + a as f64, sdx + b as f64)
            })
        })
        .collect();
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
    let mut dx = scratch(x.len());
    dx.par_chunks_mut(plane.max(1)).enumerate().with_min_len(CHUNK / plane.max(1) + 1).for_each(|(i, out)| {
        let ch = i % c;
        let (m, is, g) = (mean[ch], inv_std[ch], gamma[ch]);
        let (mean_dy, mean_dyx) = ((sums[ch].0 / count) as f32, (sums[ch].1 / count) as f32);
        let r = i * plane..(i + 1) * plane;
        for ((o, &xv), &d) in out.iter_mut().zip(&x[r.clone()]).zip(&dy[r]) {
            let xhat = (xv - m) * is;
            *o = g * is * (d * act(xv, ch) - mean_dy - xhat * mean_dyx);
        }
    });
    (dx, dgamma, dbeta)
}

pub fn leaky_relu(x: &[f32], slope: f32) -> Vec<f32> {
    let mut y = scratch(x.len());
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(o, i)| {
        for (o, &v) in o.iter_mut().zip(i) {
            *o = if v < 0.0 { v * slope } else { v };
        }
    });
    y
}

/// `dx = dy` where the forward input was ≥ 0, `slope · dy` elsewhere (the sign of the output is
/// the sign of the input for a positive slope, so either may be passed).
pub fn leaky_relu_backward(x: &[f32], dy: &[f32], slope: f32) -> Vec<f32> {
    let mut dx = scratch(x.len());
    dx.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))).for_each(|(o, (i, g))| {
        for ((o, &v), &d) in o.iter_mut().zip(i).zip(g) {
            *o = if v < 0.0 { d * slope } else { d };
        }
    });
    dx
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
    let keep = 1.0 - prob;
    let scale = if keep > 0.0 { 1.0 / keep } else { 0.0 };
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
unsafe fn dropout_chunk_avx512(out: &mut [f32], x: &[f32], seed: u64, base: u64, keep: f32, scale: f32) {
    dropout_chunk(out, x, seed, base, keep, scale)
}

/// 2x2 max-pooling with stride 2 over `[planes, h, w]` (odd trailing rows/columns dropped, as
/// burn's and Keras' "valid" pooling do). Ties go to the first element in row-major order.
pub fn max_pool2x2(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut y = scratch(planes * oh * ow);
    y.par_chunks_mut((oh * ow).max(1)).enumerate().for_each(|(p, out)| {
        let inp = &x[p * h * w..(p + 1) * h * w];
        for oy in 0..oh {
            let (r0, r1) = (&inp[2 * oy * w..2 * oy * w + w], &inp[(2 * oy + 1) * w..(2 * oy + 1) * w + w]);
            for ox in 0..ow {
                let (a, b, c, d) = (r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
                out[oy * ow + ox] = a.max(b).max(c.max(d));
            }
        }
    });
    y
}

/// Routes each output gradient to the position [`max_pool2x2`] took its maximum from.
pub fn max_pool2x2_backward(x: &[f32], dy: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    assert_eq!(x.len(), planes * h * w, "max_pool2x2_backward: input length");
    let (oh, ow) = (h / 2, w / 2);
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut((h * w).max(1)).enumerate().for_each(|(p, out)| {
        let inp = &x[p * h * w..(p + 1) * h * w];
        let g = &dy[p * oh * ow..(p + 1) * oh * ow];
        for oy in 0..oh {
            for ox in 0..ow {
                let cands = [(2 * oy) * w + 2 * ox, (2 * oy) * w + 2 * ox + 1, (2 * oy + 1) * w + 2 * ox, (2 * oy + 1) * w + 2 * ox + 1];
                let mut best = cands[0];
                for &k in &cands[1..] {
                    if inp[k] > inp[best] {
                        best = k;
                    }
                }
                out[best] += g[oy * ow + ox];
            }
        }
    });
    dx
}
