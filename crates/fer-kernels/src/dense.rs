//! Dense layers: `y = x · W + b`, then LeakyReLU and (inverted) dropout, as one kernel each way.
//!
//! burn runs a dense block as a matmul, a broadcast bias add, the activation and dropout, each
//! a node of the graph with its own pass and allocation, and its matmuls through the `gemm`
//! crate. Here the three products of a layer (forward, input gradient, weight gradient) run in
//! fer's own GEMM ([`crate::gemm`]; the `gemm` crate on CPUs without AVX-512), and the bias,
//! activation and dropout mask are applied in one pass over the output. The backward pass needs
//! only the block's output: its sign is the pre-activation's (a positive slope and a positive
//! dropout scale keep signs) and the dropout mask is recomputed from the seed.
//!
//! The mask is [`crate::pointwise::dropout`]'s for the same seed, element for element, so the
//! fused block gives exactly what the layers give one after another.

use rayon::prelude::*;

use crate::gemm::{self, Dims, Left, Mode, NR, Out, PackedA, Strided, Threads};
use crate::pointwise::{drop_in_place, keep_and_scale, leaky_factor};
use crate::scratch::scratch;
use crate::shape::GradientsWanted;

/// `x [batch, inputs] · W [inputs, outputs]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseShape {
    pub batch: usize,
    pub inputs: usize,
    pub outputs: usize,
}

/// Inverted dropout after the activation: an element is kept where
/// [`crate::pointwise::dropout_keeps`]`(seed, index, 1 - prob)`, `index` its position in the
/// row-major output, and kept elements are scaled by `1 / (1 - prob)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutMask {
    pub seed: u64,
    pub prob: f32,
}

/// What follows the product and the bias.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Epilogue {
    /// LeakyReLU's slope below zero (`>= 0`).
    pub slope: Option<f32>,
    pub dropout: Option<DropoutMask>,
}

impl Epilogue {
    /// Whether the backward pass needs the forward output.
    pub fn needs_output(&self) -> bool {
        self.slope.is_some() || self.dropout.is_some()
    }
}

fn check(s: &DenseShape, x: usize, w: usize, b: usize) {
    assert_eq!(x, s.batch * s.inputs, "dense: input length does not match {s:?}");
    assert_eq!(w, s.inputs * s.outputs, "dense: weight length does not match {s:?}");
    assert_eq!(b, s.outputs, "dense: bias length does not match {s:?}");
}

/// The forward pass: `epilogue(x · w + b)`, `[batch, outputs]` row-major.
pub fn forward(x: &[f32], w: &[f32], b: &[f32], s: &DenseShape, e: &Epilogue) -> Vec<f32> {
    check(s, x.len(), w.len(), b.len());
    let x_mat = Strided { data: x, rs: s.inputs, cs: 1 };
    let w_mat = Strided { data: w, rs: s.outputs, cs: 1 };
    let mut y = product(mode_for(s), Dims { m: s.batch, n: s.outputs, k: s.inputs }, x_mat, w_mat);
    let (n, e) = (s.outputs, *e);
    y.par_chunks_mut(rows_per_task(n) * n.max(1)).enumerate().for_each(|(t, rows)| {
        finish_rows(rows, b, (t * rows_per_task(n) * n) as u64, e);
    });
    y
}

/// Gradients of [`forward`]; each `None` unless asked for.
#[derive(Debug, Default)]
pub struct DenseGradients {
    pub dx: Option<Vec<f32>>,
    pub dw: Option<Vec<f32>>,
    pub db: Option<Vec<f32>>,
}

/// The backward pass from the output gradient `dy`. `y` is the forward output (only read when
/// the epilogue has an activation or dropout; pass `&[]` otherwise).
pub fn backward(
    x: &[f32],
    w: &[f32],
    y: &[f32],
    dy: &[f32],
    s: &DenseShape,
    e: &Epilogue,
    want: GradientsWanted,
) -> DenseGradients {
    check(s, x.len(), w.len(), s.outputs);
    let len = s.batch * s.outputs;
    assert_eq!(dy.len(), len, "dense backward: output gradient length does not match {s:?}");
    // The gradient before the epilogue: dy through dropout's mask and LeakyReLU's slope.
    let dz: std::borrow::Cow<[f32]> = if e.needs_output() {
        assert_eq!(y.len(), len, "dense backward: saved output length does not match {s:?}");
        let mut dz = scratch(len);
        let n = s.outputs.max(1);
        let e = *e;
        dz.par_chunks_mut(rows_per_task(n) * n).enumerate().for_each(|(t, out)| {
            let first = t * rows_per_task(n) * n;
            unfinish(out, &y[first..first + out.len()], &dy[first..first + out.len()], first as u64, e);
        });
        std::borrow::Cow::Owned(dz)
    } else {
        std::borrow::Cow::Borrowed(dy)
    };
    let dz_mat = Strided { data: &dz, rs: s.outputs, cs: 1 };
    let mode = mode_for(s);
    DenseGradients {
        // dx = dz · Wᵀ
        dx: want.input.then(|| {
            product(
                mode,
                Dims { m: s.batch, n: s.inputs, k: s.outputs },
                dz_mat,
                Strided { data: w, rs: 1, cs: s.outputs },
            )
        }),
        // dW = xᵀ · dz
        dw: want.weight.then(|| {
            product(
                mode,
                Dims { m: s.inputs, n: s.outputs, k: s.batch },
                Strided { data: x, rs: 1, cs: s.inputs },
                dz_mat,
            )
        }),
        db: want.bias.then(|| column_sums(&dz, s.batch, s.outputs)),
    }
}

/// The smallest batch whose products run in fer's GEMM (see [`mode_for`]).
pub const FEW_ROWS: usize = 16;

/// Rows per parallel task of the element-wise passes (about 16 K elements).
fn rows_per_task(n: usize) -> usize {
    (1usize << 14).div_ceil(n.max(1))
}

/// The mode of fer's GEMM a layer's products run in, or `None` for the `gemm` crate.
///
/// A handful of rows (batch-1 inference) is bound by reading the weights, and packing them for
/// fer's GEMM would cost more than the product: a batch of fewer than [`FEW_ROWS`] rows runs all
/// of its products through the `gemm` crate, which reads them in place, in `f32` whatever the
/// precision (so bf16 runs compute such small batches' dense layers in `f32`).
fn mode_for(s: &DenseShape) -> Option<Mode> {
    gemm::kernel().filter(|_| s.batch >= FEW_ROWS)
}

/// `a · b`, `m x n` row-major, on all cores, in `mode` (see [`mode_for`]).
///
/// In fer's GEMM the work is split by columns where the rows are few (a batch): split by rows,
/// each core would pack all of `b` (the weights) for itself. Each core computes its block of
/// columns into a buffer of its own, and the blocks are copied into place.
fn product(mode: Option<Mode>, dims: Dims, a: Strided, b: Strided) -> Vec<f32> {
    let Dims { m, n, k } = dims;
    let mut c = scratch(m * n);
    let Some(mode) = mode else {
        gemm::multiply_portable(dims, a, b, Out::write(&mut c, n), Threads::All);
        return c;
    };
    a.check(m, k, "a");
    b.check(k, n, "b");
    let threads = rayon::current_num_threads();
    let width = n.div_ceil(threads).div_ceil(NR) * NR;
    if m >= n || threads == 1 || width >= n || m * n * k < 1 << 20 {
        let threads = Threads::all_if(m >= n && m * n * k >= 1 << 20);
        gemm::multiply_in(mode, dims, Left::Strided(a), &b, Out::write(&mut c, n), threads);
        return c;
    }
    let packed = PackedA::from_strided(mode, a, m, k);
    let blocks: Vec<(usize, Vec<f32>)> = (0..n)
        .step_by(width)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|n0| {
            let cols = width.min(n - n0);
            let mut block = scratch(m * cols);
            let b = Strided { data: &b.data[n0 * b.cs..], ..b };
            gemm::multiply_in(
                mode,
                Dims { n: cols, ..dims },
                Left::Packed(&packed, 0),
                &b,
                Out::write(&mut block, cols),
                Threads::One,
            );
            (n0, block)
        })
        .collect();
    c.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
        for (n0, block) in &blocks {
            let cols = width.min(n - n0);
            row[*n0..n0 + cols].copy_from_slice(&block[r * cols..(r + 1) * cols]);
        }
    });
    c
}

/// Per-column sums of `[rows, cols]`, rows added in order (the same result on any core count).
fn column_sums(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut sums = vec![0.0f32; cols];
    for row in v.chunks_exact(cols.max(1)).take(rows) {
        add_row(&mut sums, row);
    }
    sums
}

multiversion! {
    fn add_row(sums: &mut [f32], row: &[f32]) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
}

/// The epilogue over whole rows in place: `v + b`, then LeakyReLU, then dropout; `first` is the
/// index of `rows[0]` in the output (the dropout mask's index).
fn finish_rows(rows: &mut [f32], b: &[f32], first: u64, e: Epilogue) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
        // SAFETY: the CPU has the features this copy was compiled for.
        unsafe { finish_rows_avx512(rows, b, first, e) };
        return;
    }
    finish_rows_body(rows, b, first, e);
}

/// The same code compiled for AVX-512 (the dropout hash's 64-bit multiplies vectorise only with
/// AVX-512DQ), so the results do not depend on the CPU.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn finish_rows_avx512(rows: &mut [f32], b: &[f32], first: u64, e: Epilogue) {
    finish_rows_body(rows, b, first, e)
}

#[inline(always)]
fn finish_rows_body(rows: &mut [f32], b: &[f32], first: u64, e: Epilogue) {
    let n = b.len().max(1);
    for (r, row) in rows.chunks_mut(n).enumerate() {
        for (v, &bias) in row.iter_mut().zip(b) {
            *v += bias;
        }
        if let Some(slope) = e.slope {
            for v in row.iter_mut() {
                *v *= leaky_factor(*v, slope);
            }
        }
        if let Some(mask) = e.dropout {
            let (keep, scale) = keep_and_scale(mask.prob);
            drop_in_place(row, mask.seed, first + (r * n) as u64, keep, scale);
        }
    }
}

/// `dz = dy` through the epilogue's dropout mask, then LeakyReLU's slope where `y < 0`; `first`
/// is the index of `dz[0]` in the output. In the order the separate layers' backward passes
/// multiply, so the result is theirs to the bit.
fn unfinish(dz: &mut [f32], y: &[f32], dy: &[f32], first: u64, e: Epilogue) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
        // SAFETY: the CPU has the features this copy was compiled for.
        unsafe { unfinish_avx512(dz, y, dy, first, e) };
        return;
    }
    unfinish_body(dz, y, dy, first, e);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn unfinish_avx512(dz: &mut [f32], y: &[f32], dy: &[f32], first: u64, e: Epilogue) {
    unfinish_body(dz, y, dy, first, e)
}

#[inline(always)]
fn unfinish_body(dz: &mut [f32], y: &[f32], dy: &[f32], first: u64, e: Epilogue) {
    dz.copy_from_slice(dy);
    if let Some(mask) = e.dropout {
        let (keep, scale) = keep_and_scale(mask.prob);
        drop_in_place(dz, mask.seed, first, keep, scale);
    }
    if let Some(slope) = e.slope {
        for (g, &out) in dz.iter_mut().zip(y) {
            *g *= leaky_factor(out, slope);
        }
    }
}
