//! 3x3 convolutions with "same" padding by Winograd's F(2x2, 3x3) algorithm, in `f32`.
//!
//! Why: in `f32` the CNN's step is bound by the FMA count (the 64→64 layer's GEMM runs at 84% of
//! the cores' peak), so only fewer multiplications make it faster. F(2x2, 3x3) computes each 2x2
//! block of outputs from a 4x4 block of input with 16 multiplications per (input, output) channel
//! pair instead of 36: the input tile `d` and the kernel `g` are transformed (`V = Bᵀ d B`,
//! `U = G g Gᵀ`), the 16 positions ξ of the transformed tiles are 16 independent GEMMs
//! `M_ξ = U_ξ · V_ξ` over the input channels (fer's own GEMM, [`crate::gemm`]), and
//! `Y = Aᵀ M A` turns each tile back into 2x2 outputs.
//!
//! The transforms only add and halve, so the result differs from the direct sum by rounding
//! alone (the tests bound it against f64 loops); the order of every sum is fixed, so results
//! repeat bit for bit.
//!
//! In bf16 the forward pass (and so the input gradient) runs the same steps with the GEMM in
//! [`Mode::Bf16`]: the transforms stay in `f32` and their results `U` and `V` are rounded to bf16
//! where the GEMM packs them, the transformed input two channels per lane as the bf16
//! micro-kernel reads it.
//! That rounds transformed values rather than the operands themselves, so the result is not the
//! direct bf16 convolution's; the tests bound both against `f32`, and the accuracy this costs a
//! training run is in docs/PERFORMANCE.md.

use rayon::prelude::*;

use crate::gemm::{self, Dims, Left, Mode, NR, Out, PackedA, Right, SLOTS, Strided, Threads};
use crate::scratch::scratch;
use crate::shape::ConvShape;
use crate::simd::first_lanes;

/// Tiles per block: the columns of each of the 16 GEMMs (three 48-column strips of the
/// micro-kernel).
const TILES: usize = 144;

/// Output channels whose 16 products are computed before they are transformed back: 16 x 64 x
/// 144 values (590 KB) stay in the L2 cache.
const OUT_ROWS: usize = 64;

/// Whether `s` is a convolution this module computes: 3x3 kernels, padding 1 on every side.
pub fn fits(s: &ConvShape) -> bool {
    s.kh == 3 && s.kw == 3 && s.pad_h == 1 && s.pad_w == 1 && s.h > 0 && s.w > 0
}

/// `U_ξ = G g Gᵀ` for every (output, input) channel pair, packed as 16 left operands in `mode`.
fn transformed_weights(w: &[f32], s: &ConvShape, mode: Mode) -> Vec<PackedA> {
    let pairs = s.cout * s.cin;
    // u[pair][ξ], computed in parallel (the deep layers have 131 K pairs), then packed per ξ.
    let mut u = scratch(16 * pairs);
    u.par_chunks_mut(16).zip(w.par_chunks(9)).for_each(|(u, g)| {
        // G g: rows (g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2) per column.
        let mut t = [[0.0f32; 3]; 4];
        for c in 0..3 {
            let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
            t[0][c] = g0;
            t[1][c] = 0.5 * (g0 + g1 + g2);
            t[2][c] = 0.5 * (g0 - g1 + g2);
            t[3][c] = g2;
        }
        // (G g) Gᵀ: the same on each row.
        for (r, row) in t.iter().enumerate() {
            let (g0, g1, g2) = (row[0], row[1], row[2]);
            u[4 * r..4 * r + 4].copy_from_slice(&[g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2]);
        }
    });
    (0..16)
        .into_par_iter()
        .map(|xi| PackedA::new(mode, s.cout, s.cin, |co, ci| u[(co * s.cin + ci) * 16 + xi]))
        .collect()
}

/// `conv(x, w)` for a shape that [`fits`], its products in `mode`, then `finish(plane, channel)`
/// on each output plane (bias, BatchNorm's scale and shift, LeakyReLU: the caller's epilogue),
/// images split across the cores in groups.
pub(crate) fn forward(
    x: &[f32],
    w: &[f32],
    s: &ConvShape,
    mode: Mode,
    finish: &(impl Fn(&mut [f32], usize) + Sync),
) -> Vec<f32> {
    assert!(fits(s) && mode.available(), "winograd: {s:?} is not a 3x3 'same' convolution, or this CPU lacks {mode:?}");
    assert_eq!(x.len(), s.input_len(), "winograd: input length does not match {s:?}");
    assert_eq!(w.len(), s.weight_len(), "winograd: weight length does not match {s:?}");
    let u = transformed_weights(w, s, mode);
    let per = mode.per_lane();
    let (plane, image_in) = (s.h * s.w, s.cin * s.h * s.w);
    let tiles_per_image = s.h.div_ceil(2) * s.w.div_ceil(2);
    // Whole images per task, as many as fill a block (the CNN's maps give exactly 144 tiles:
    // 16 images of 6x6, 4 of 12x12, one of 24x24; a 48x48 image is four blocks), and at least
    // four tasks per core.
    let per_task = (TILES / tiles_per_image).clamp(1, s.n.div_ceil(4 * rayon::current_num_threads()).max(1));
    let mut y = scratch(s.output_len());
    y.par_chunks_mut(per_task * s.cout * plane).enumerate().for_each(|(task, out)| {
        let images = out.len() / (s.cout * plane);
        let input = &x[task * per_task * image_in..(task * per_task + images) * image_in];
        let rows = OUT_ROWS.min(s.cout);
        let (mut v, mut m) = (scratch(16 * s.cin.div_ceil(per) * TILES), scratch(16 * rows * TILES));
        let total = images * tiles_per_image;
        for first in (0..total).step_by(TILES) {
            let count = TILES.min(total - first);
            let layout = Layout::Panel { strips: count.div_ceil(NR), cin: s.cin, per };
            let region = layout.region(s.cin);
            transform_input(input, s, first, count, &mut v, layout);
            // The products for a slice of output channels at a time, so that they are still in
            // the cache when the output transform reads them.
            for co in (0..s.cout).step_by(rows) {
                let rows = rows.min(s.cout - co);
                for (xi, u) in u.iter().enumerate() {
                    let b = InPanels { data: &v[xi * region..(xi + 1) * region], layout, count };
                    let m = &mut m[xi * rows * TILES..(xi + 1) * rows * TILES];
                    gemm::multiply_in(
                        mode,
                        Dims { m: rows, n: count, k: s.cin },
                        Left::Packed(u, co),
                        &b,
                        Out::write(m, TILES),
                        Threads::One,
                    );
                }
                transform_output(&m[..16 * rows * TILES], s, co..co + rows, first, count, out);
            }
        }
        for (p, plane) in out.chunks_mut(plane).enumerate() {
            finish(plane, p % s.cout);
        }
    });
    y
}

/// Tiles per block of the weight gradient: one k block of fer's GEMM (the tiles are what its
/// products sum over).
const GRADIENT_TILES: usize = 128;

/// How many partial weight gradients are summed (fixed, so the sums do not depend on the cores).
const PARTS: usize = 8;

/// The weight gradient `[cout, cin, 3, 3]` of a convolution that [`fits`], given its input `x`
/// and output gradient `dy`: the adjoint of [`forward`]'s steps. With `dM = A dY Aᵀ` per tile,
/// `dU_ξ = Σ_tiles dM_ξ V_ξᵀ` (16 GEMMs summing over tiles) and `dW = Gᵀ dU G`.
///
/// `f32` only: in bf16 both operands of these products need packing (a row pack and column
/// gathers), which ate the gain (0.96-1.14x the direct bf16 GEMM per layer, measured in
/// docs/PERFORMANCE.md), so bf16 keeps the direct weight gradient and its smaller rounding error.
pub(crate) fn weight_gradient(x: &[f32], dy: &[f32], s: &ConvShape) -> Vec<f32> {
    assert!(fits(s) && Mode::F32.available(), "winograd: {s:?} is not a 3x3 'same' convolution on an AVX-512 CPU");
    assert_eq!(x.len(), s.input_len(), "winograd: input length does not match {s:?}");
    assert_eq!(dy.len(), s.output_len(), "winograd: output gradient length does not match {s:?}");
    let (image_in, image_out) = (s.cin * s.h * s.w, s.cout * s.h * s.w);
    let tiles_per_image = s.h.div_ceil(2) * s.w.div_ceil(2);
    let pairs = s.cout * s.cin;
    let per_part = s.n.div_ceil(PARTS.min(s.n).max(1));
    // dU_ξ held as [ci][co] (transposed) where the layer widens.
    let transposed = s.cout > s.cin;
    let partials: Vec<Vec<f32>> = (0..s.n.div_ceil(per_part.max(1)))
        .into_par_iter()
        .map(|part| {
            let images = per_part.min(s.n - part * per_part);
            let x = &x[part * per_part * image_in..(part * per_part + images) * image_in];
            let dy = &dy[part * per_part * image_out..(part * per_part + images) * image_out];
            let mut du = vec![0.0f32; 16 * pairs];
            let block = GRADIENT_TILES;
            let (mut v, mut d) = (scratch(16 * s.cin * block), scratch(16 * s.cout * block));
            let total = images * tiles_per_image;
            for first in (0..total).step_by(block) {
                let count = block.min(total - first);
                transform_input(x, s, first, count, &mut v, Layout::Rows { block });
                transform_output_gradient(dy, s, first, count, &mut d, block);
                for xi in 0..16 {
                    // dU_ξ[co][ci] += Σ_t dM_ξ[co][t] · V_ξ[ci][t], with the wider channel count as
                    // the GEMM's columns (48 per strip: 64 columns would compute 96).
                    let dm = &d[xi * s.cout * block..(xi + 1) * s.cout * block];
                    let vt = &v[xi * s.cin * block..(xi + 1) * s.cin * block];
                    let (rows, cols, a, b) = if transposed { (s.cin, s.cout, vt, dm) } else { (s.cout, s.cin, dm, vt) };
                    let a = Strided { data: a, rs: block, cs: 1 };
                    let b = Strided { data: b, rs: 1, cs: block };
                    let du = &mut du[xi * pairs..(xi + 1) * pairs];
                    gemm::multiply_in(
                        Mode::F32,
                        Dims { m: rows, n: cols, k: count },
                        Left::Strided(a),
                        &b,
                        Out::add(du, cols),
                        Threads::One,
                    );
                }
            }
            du
        })
        .collect();
    let mut du = vec![0.0f32; 16 * pairs];
    for part in &partials {
        du.par_chunks_mut(1 << 14)
            .zip(part.par_chunks(1 << 14))
            .for_each(|(t, p)| t.iter_mut().zip(p).for_each(|(t, v)| *t += v));
    }
    // dW = Gᵀ dU G for every (output, input) channel pair.
    let mut dw = scratch(s.weight_len());
    dw.par_chunks_mut(9).enumerate().for_each(|(pair, g)| {
        let (co, ci) = (pair / s.cin, pair % s.cin);
        let within = if transposed { ci * s.cout + co } else { pair };
        let at = |i: usize, j: usize| du[(4 * i + j) * pairs + within];
        // r = dU G, row by row; then Gᵀ r, column by column.
        let r: [[f32; 3]; 4] = std::array::from_fn(|i| {
            let (u0, u1, u2, u3) = (at(i, 0), at(i, 1), at(i, 2), at(i, 3));
            [u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3]
        });
        for b in 0..3 {
            g[b] = r[0][b] + 0.5 * (r[1][b] + r[2][b]);
            g[3 + b] = 0.5 * (r[1][b] - r[2][b]);
            g[6 + b] = 0.5 * (r[1][b] + r[2][b]) + r[3][b];
        }
    });
    dw
}

/// `dM = A dY Aᵀ` (the adjoint of the output transform) for tiles `first..first + count` of
/// `dy` into `d[ξ][co][tile - first]` (row stride `block`); outputs past an odd map's
/// edge count as zero (the forward pass dropped them).
fn transform_output_gradient(dy: &[f32], s: &ConvShape, first: usize, count: usize, d: &mut [f32], block: usize) {
    assert!(d.len() >= 16 * s.cout * block, "winograd: transformed gradient too short");
    for (image, row, col, len, at) in runs(s, first, count) {
        for co in 0..s.cout {
            let plane = &dy[(image * s.cout + co) * s.h * s.w..(image * s.cout + co + 1) * s.h * s.w];
            let rows = [
                Some(&plane[2 * row * s.w..(2 * row + 1) * s.w]),
                (2 * row + 1 < s.h).then(|| &plane[(2 * row + 1) * s.w..(2 * row + 2) * s.w]),
            ];
            assert!(2 * (col + len) <= s.w + 1 && at + len <= block);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the loads are masked to each row's columns, the stores to tiles
            // `at..at + len` of row `co` of each of the 16 matrices (bounded by the asserts);
            // AVX-512F is available (`weight_gradient` asserts it).
            unsafe {
                gradient_avx512(rows, s.w, col, len, d[co * block + at..].as_mut_ptr(), s.cout * block)
            };
        }
    }
}

/// [`transform_output_gradient`] for one run of `len` tiles of one channel, sixteen per step:
/// `out[ξ · stride + t]`.
///
/// # Safety
/// The CPU has AVX-512F; each row present holds `width` values and `2 * (col + len) <= width + 1`;
/// `out` is valid for writes at `xi * stride + t` for every `xi < 16` and `t < len`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gradient_avx512(
    rows: [Option<&[f32]>; 2],
    width: usize,
    col: usize,
    len: usize,
    out: *mut f32,
    stride: usize,
) {
    use std::arch::x86_64::*;
    // SAFETY: see the caller; masked-off lanes are never read.
    unsafe {
        for t0 in (0..len).step_by(16) {
            let mask: __mmask16 = first_lanes(len - t0);
            // q_a = (dY[a][0], dY[a][0] + dY[a][1], dY[a][0] - dY[a][1], -dY[a][1]) for the
            // tile's two output rows a (zeros past the map).
            let mut q = [[_mm512_setzero_ps(); 4]; 2];
            for (q, row) in q.iter_mut().zip(rows) {
                let Some(row) = row else { continue };
                let from = 2 * (col + t0) as isize;
                let load = |c: isize| _mm512_maskz_loadu_ps(inside(c, width), row.as_ptr().wrapping_offset(c));
                let (lo, hi) = (load(from), load(from + 16));
                let (y0, y1) = even_odd_ps(lo, hi);
                *q = [y0, _mm512_add_ps(y0, y1), _mm512_sub_ps(y0, y1), _mm512_sub_ps(_mm512_setzero_ps(), y1)];
            }
            // dM[i][j] = (q_0, q_0 + q_1, q_0 - q_1, -q_1)[i] at column j.
            let store = |xi: usize, v: __m512| _mm512_mask_storeu_ps(out.add(xi * stride + t0), mask, v);
            #[allow(clippy::needless_range_loop)]
            for j in 0..4 {
                store(j, q[0][j]);
                store(4 + j, _mm512_add_ps(q[0][j], q[1][j]));
                store(8 + j, _mm512_sub_ps(q[0][j], q[1][j]));
                store(12 + j, _mm512_sub_ps(_mm512_setzero_ps(), q[1][j]));
            }
        }
    }
}

/// `(image, tile row, first tile column, tiles)` runs of consecutive tiles in one tile row,
/// covering tiles `first..first + count` of the task (tile index = (image · rows + row) · cols + col).
fn runs(s: &ConvShape, first: usize, count: usize) -> impl Iterator<Item = (usize, usize, usize, usize, usize)> {
    let (rows, cols) = (s.h.div_ceil(2), s.w.div_ceil(2));
    let mut t = first;
    std::iter::from_fn(move || {
        if t >= first + count {
            return None;
        }
        let (image, rest) = (t / (rows * cols), t % (rows * cols));
        let (row, col) = (rest / cols, rest % cols);
        let len = (cols - col).min(first + count - t);
        let at = t - first;
        t += len;
        Some((image, row, col, len, at))
    })
}

/// Where [`transform_input`] puts the transformed value of channel `ci`, tile `t` (of the block)
/// and position ξ, within ξ's region of `v` ([`Layout::region`] values apart).
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// `[ci][t]`, rows `block` apart.
    Rows { block: usize },
    /// As fer's GEMM packs a right operand of `cin` rows (k) and the block's tiles (columns),
    /// `per` channels to a 32-bit lane ([`Mode::per_lane`]: 2 in bf16, as [`crate::bf16`]
    /// pairs them): k blocks of [`SLOTS`] lanes, each `strips` strips of [`NR`] tiles,
    /// `[strip][lane][tile]`. The products then read it in place ([`InPanels`]).
    Panel { strips: usize, cin: usize, per: usize },
}

impl Layout {
    /// 32-bit values per ξ region for `cin` channels.
    fn region(self, cin: usize) -> usize {
        match self {
            Layout::Rows { block } => cin * block,
            Layout::Panel { per, .. } => cin.div_ceil(per) * TILES,
        }
    }

    /// Channels per 32-bit lane.
    fn per(self) -> usize {
        match self {
            Layout::Rows { .. } => 1,
            Layout::Panel { per, .. } => per,
        }
    }

    /// Offset of the lane holding (ci, t) within a ξ region.
    #[inline(always)]
    fn at(self, ci: usize, t: usize) -> usize {
        match self {
            Layout::Rows { block } => ci * block + t,
            Layout::Panel { strips, cin, per } => {
                let k0 = ci - ci % (per * SLOTS);
                let lanes = (per * SLOTS).min(cin - k0).div_ceil(per);
                k0 / per * strips * NR + (t / NR) * lanes * NR + (ci - k0) / per * NR + t % NR
            }
        }
    }
}

/// One ξ's transformed input for a block, in [`Layout::Panel`]: the right operand of its
/// product, read in place.
struct InPanels<'a> {
    data: &'a [f32],
    /// A [`Layout::Panel`] for the block's `count` tiles.
    layout: Layout,
    count: usize,
}

impl Right for InPanels<'_> {
    fn pack(&self, mode: Mode, k0: usize, k1: usize, n0: usize, n1: usize, out: &mut Vec<u32>) {
        // Not reached (`packed` always answers); a plain copy of the same lanes.
        assert!(
            mode.per_lane() == self.layout.per() && n1 <= self.count,
            "winograd: panel operand asked for {mode:?} or past its tiles"
        );
        out.clear();
        for t in (n0..n1).step_by(NR) {
            for ci in (k0..k1).step_by(mode.per_lane()) {
                out.extend((t..t + NR).map(|j| if j < n1 { self.data[self.layout.at(ci, j)].to_bits() } else { 0 }));
            }
        }
    }

    fn packed(&self, mode: Mode, k0: usize, k1: usize, n0: usize, n1: usize) -> Option<&[u32]> {
        let Layout::Panel { strips, cin, per } = self.layout else { return None };
        if mode.per_lane() != per || n0 != 0 || n1 != self.count || !k0.is_multiple_of(per * SLOTS) || k1 > cin {
            return None;
        }
        let start = k0 / per * strips * NR;
        let block = &self.data[start..start + mode.lanes(k0, k1) * strips * NR];
        // SAFETY: f32 and u32 have the same size and alignment, and any bits are a valid u32.
        Some(unsafe { std::slice::from_raw_parts(block.as_ptr().cast::<u32>(), block.len()) })
    }
}

/// `V = Bᵀ d B` for tiles `first..first + count` into `v[ξ]` in `layout`.
fn transform_input(x: &[f32], s: &ConvShape, first: usize, count: usize, v: &mut [f32], layout: Layout) {
    let region = layout.region(s.cin);
    assert!(
        v.len() >= 16 * region && count <= TILES.max(GRADIENT_TILES),
        "winograd: transformed input buffer too short"
    );
    let per = layout.per();
    for (image, row, col, len, at) in runs(s, first, count) {
        // The tile row's four input rows (2 row - 1 .. 2 row + 2) of channel `ci`; `None` outside
        // the map, and for a channel past the last (the zero half of a bf16 pair).
        let rows = |ci: usize| -> [Option<&[f32]>; 4] {
            let channel =
                (ci < s.cin).then(|| &x[(image * s.cin + ci) * s.h * s.w..(image * s.cin + ci + 1) * s.h * s.w]);
            std::array::from_fn(|i| {
                let r = (2 * row + i).checked_sub(1)?;
                channel.filter(|_| r < s.h).map(|c| &c[r * s.w..(r + 1) * s.w])
            })
        };
        for ci in (0..s.cin).step_by(per) {
            let run = InputRun { rows: [rows(ci), rows(ci + 1)], width: s.w, col, len, ci, at };
            transform_input_run(&run, v, region, layout);
        }
    }
}

/// One run of `len` tiles of a tile row: from tile column `col` of channel `ci` (and, in a layout
/// of two channels per lane, `ci + 1`: the second set of rows), the run's first tile being tile
/// `at` of the block. Tile column t reads input columns 2t - 1 .. 2t + 2 of each of the four
/// rows (each `width` values; `None` reads zeros).
#[derive(Clone, Copy)]
struct InputRun<'a> {
    rows: [[Option<&'a [f32]>; 4]; 2],
    width: usize,
    col: usize,
    len: usize,
    ci: usize,
    at: usize,
}

/// [`transform_input`] for one run: into `v` in `layout`, ξ regions `region` apart. Sixteen tiles
/// per step, one per vector lane.
fn transform_input_run(run: &InputRun, v: &mut [f32], region: usize, layout: Layout) {
    let InputRun { rows, width, col, len, ci, at } = *run;
    assert!(
        rows.iter().flatten().flatten().all(|r| r.len() == width) && 2 * (col + len) <= width + 1,
        "winograd: input rows"
    );
    assert!(
        at + len <= TILES.max(GRADIENT_TILES)
            && 16 * region <= v.len()
            && (len == 0 || layout.at(ci, at + len - 1) < region),
        "winograd: transformed input too short"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the loads are masked to each row's columns and the stores to the run's tiles, whose
    // offsets the asserts above bound; this module runs only where AVX-512F is available
    // (`forward` and `weight_gradient` assert it).
    unsafe {
        input_avx512(run, v.as_mut_ptr(), region, layout)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("winograd runs only on AVX-512 CPUs");
}

/// [`crate::simd::even_odd`] on `f32` vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn even_odd_ps(
    lo: std::arch::x86_64::__m512,
    hi: std::arch::x86_64::__m512,
) -> (std::arch::x86_64::__m512, std::arch::x86_64::__m512) {
    use std::arch::x86_64::*;
    let (even, odd) = crate::simd::even_odd(_mm512_castps_si512(lo), _mm512_castps_si512(hi));
    (_mm512_castsi512_ps(even), _mm512_castsi512_ps(odd))
}

/// The lanes of a 16-wide load from column `from` that fall inside a row of `width` columns.
#[inline(always)]
fn inside(from: isize, width: usize) -> u16 {
    let lo = (-from).clamp(0, 16) as u32;
    let hi = (width as isize - from).clamp(0, 16) as u32;
    if hi <= lo { 0 } else { (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16 }
}

/// [`transform_input_run`]'s body; the caller checks the bounds.
///
/// # Safety
/// The CPU has AVX-512F; each row of `run` present holds `width` values and
/// `2 * (col + len) <= width + 1`; `v` is valid for writes at every offset `layout` gives for
/// channel `ci` and tiles `at..at + len`, in each of the 16 matrices of `region` values
/// ([`transform_input_run`] asserts all of it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_avx512(run: &InputRun, v: *mut f32, region: usize, layout: Layout) {
    use std::arch::x86_64::*;
    let InputRun { rows, width, col, len, ci, at } = *run;
    // SAFETY: see the caller; a masked-off lane is never read or written, so the pointers may be
    // offset past their ends (with `wrapping_offset`/`wrapping_sub`, never dereferenced there).
    unsafe {
        // One channel's V for tiles t0 .. t0 + 16 of the run, in ξ order.
        let transform = |rows: &[Option<&[f32]>; 4], t0: usize| -> [__m512; 16] {
            let mut e = [[_mm512_setzero_ps(); 4]; 4];
            for (e, row) in e.iter_mut().zip(rows) {
                let Some(row) = row else { continue };
                // Tile t's row is columns 2t - 1 .. 2t + 2: (d0, d1) the even and odd columns
                // from 2t - 1, (d2, d3) those from 2t + 1.
                let from = 2 * (col + t0) as isize - 1;
                let load = |c: isize| _mm512_maskz_loadu_ps(inside(c, width), row.as_ptr().wrapping_offset(c));
                let (lo, hi, lo2, hi2) = (load(from), load(from + 16), load(from + 2), load(from + 18));
                let ((d0, d1), (d2, d3)) = (even_odd_ps(lo, hi), even_odd_ps(lo2, hi2));
                // e = d B.
                *e = [_mm512_sub_ps(d0, d2), _mm512_add_ps(d1, d2), _mm512_sub_ps(d2, d1), _mm512_sub_ps(d1, d3)];
            }
            // V = Bᵀ e, column by column.
            let mut out = [_mm512_setzero_ps(); 16];
            for j in 0..4 {
                out[j] = _mm512_sub_ps(e[0][j], e[2][j]);
                out[4 + j] = _mm512_add_ps(e[1][j], e[2][j]);
                out[8 + j] = _mm512_sub_ps(e[2][j], e[1][j]);
                out[12 + j] = _mm512_sub_ps(e[1][j], e[3][j]);
            }
            out
        };
        for t0 in (0..len).step_by(16) {
            let mask: __mmask16 = first_lanes(len - t0);
            let lo = transform(&rows[0], t0);
            let values = if layout.per() == 2 {
                // Two channels per lane: `ci` in the low half, `ci + 1` in the high half.
                let hi = transform(&rows[1], t0);
                std::array::from_fn(|xi| {
                    _mm512_castsi512_ps(crate::simd::pair_lanes(
                        _mm512_castps_si512(lo[xi]),
                        _mm512_castps_si512(hi[xi]),
                    ))
                })
            } else {
                lo
            };
            // Tiles a .. a + 16 of the block; in panels a strip holds NR of them, so a vector
            // may end in the next strip: the lanes past the strip's end are stored from there.
            let a = at + t0;
            let split = match layout {
                Layout::Rows { .. } => 16,
                Layout::Panel { .. } => NR - a % NR,
            };
            let first_part: __mmask16 = if split >= 16 { mask } else { mask & ((1u16 << split) - 1) };
            for (xi, value) in values.into_iter().enumerate() {
                let base = v.wrapping_add(xi * region);
                _mm512_mask_storeu_ps(base.wrapping_add(layout.at(ci, a)), first_part, value);
                if split < 16 && mask & !first_part != 0 {
                    // Lane `split` goes to tile a + split, the next strip's first.
                    _mm512_mask_storeu_ps(
                        base.wrapping_add(layout.at(ci, a + split)).wrapping_sub(split),
                        mask & !first_part,
                        value,
                    );
                }
            }
        }
    }
}

/// `Y = Aᵀ M A` for tiles `first..first + count` and output channels `channels` from
/// `m[ξ][co - channels.start][tile - first]` into the task's output `[image][co][h][w]`, dropping
/// the row and column past an odd map's edge.
fn transform_output(
    m: &[f32],
    s: &ConvShape,
    channels: std::ops::Range<usize>,
    first: usize,
    count: usize,
    out: &mut [f32],
) {
    let stride = channels.len() * TILES;
    for (image, row, col, len, at) in runs(s, first, count) {
        for co in channels.clone() {
            let plane = &mut out[(image * s.cout + co) * s.h * s.w..(image * s.cout + co + 1) * s.h * s.w];
            // Output columns 2 col .. 2 (col + len), the last one dropped past an odd width.
            let (c0, c1) = (2 * col, (2 * (col + len)).min(s.w));
            let (top, bottom) = plane[2 * row * s.w..].split_at_mut(s.w);
            let bottom = (2 * row + 1 < s.h).then(|| &mut bottom[c0..c1]);
            transform_output_run(&m[(co - channels.start) * TILES + at..], stride, len, &mut top[c0..c1], bottom);
        }
    }
}

/// [`transform_output`] for one run of `len` tiles of one output channel into the two output
/// rows it covers (`bottom` is `None` past an odd map's last row), columns interleaved. Sixteen
/// tiles per step, one per vector lane.
fn transform_output_run(m: &[f32], stride: usize, len: usize, top: &mut [f32], bottom: Option<&mut [f32]>) {
    assert!(len == 0 || m.len() >= 15 * stride + len, "winograd: products too short");
    assert!(
        top.len() <= 2 * len && top.len() + 1 >= 2 * len && bottom.as_ref().is_none_or(|b| b.len() == top.len()),
        "winograd: output rows"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the asserts above bound every masked load and store; AVX-512F is available
    // (`forward` asserts it).
    unsafe {
        output_avx512(m, stride, len, top, bottom)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("winograd runs only on AVX-512 CPUs");
}

/// [`transform_output_run`]'s body; the caller checks the bounds.
///
/// # Safety
/// The CPU has AVX-512F; `m` holds `15 * stride + len` values (16 matrices of `len` tiles at
/// `xi * stride`), and `top` (and `bottom`, of the same length) holds `2 * len - 1` or `2 * len`
/// columns ([`transform_output_run`] asserts both).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn output_avx512(m: &[f32], stride: usize, len: usize, top: &mut [f32], bottom: Option<&mut [f32]>) {
    use std::arch::x86_64::*;
    // SAFETY: see the caller.
    unsafe {
        let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let columns = top.len();
        let outputs = [Some(top.as_mut_ptr()), bottom.map(|b| b.as_mut_ptr())];
        for t0 in (0..len).step_by(16) {
            let mask: __mmask16 = first_lanes(len - t0);
            let at = |xi: usize| _mm512_maskz_loadu_ps(mask, m.as_ptr().add(xi * stride + t0));
            // Aᵀ M: rows (m0 + m1 + m2, m1 - m2 - m3) per column.
            let mut r = [[_mm512_setzero_ps(); 4]; 2];
            #[allow(clippy::needless_range_loop)]
            for j in 0..4 {
                let (m0, m1, m2, m3) = (at(j), at(4 + j), at(8 + j), at(12 + j));
                r[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                r[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
            }
            // (Aᵀ M) A, each output row's even and odd columns interleaved; columns 2 t0 ..
            // 2 t0 + 32 of the row, as many as it has.
            let lanes = |from: usize| -> __mmask16 { first_lanes(columns.saturating_sub(from)) };
            for (row, dst) in r.iter().zip(outputs) {
                let Some(dst) = dst else { continue };
                let even = _mm512_add_ps(_mm512_add_ps(row[0], row[1]), row[2]);
                let odd = _mm512_sub_ps(_mm512_sub_ps(row[1], row[2]), row[3]);
                _mm512_mask_storeu_ps(dst.add(2 * t0), lanes(2 * t0), _mm512_permutex2var_ps(even, low, odd));
                _mm512_mask_storeu_ps(
                    dst.add(2 * t0 + 16),
                    lanes(2 * t0 + 16),
                    _mm512_permutex2var_ps(even, high, odd),
                );
            }
        }
    }
}
