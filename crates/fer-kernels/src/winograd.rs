//! 3x3 convolutions with "same" padding by Winograd's F(2x2, 3x3) algorithm, in `f32`.
//!
//! Why: in `f32` the CNN's step is bound by the FMA count (the 64→64 layer's GEMM runs at 84% of
//! the cores' peak), so only fewer multiplications make it faster. F(2x2, 3x3) computes each 2x2
//! block of outputs from a 4x4 block of input with 16 multiplications per (input, output) channel
//! pair instead of 36: the input tile `d` and the kernel `g` are transformed (`V = Bᵀ d B`,
//! `U = G g Gᵀ`), the 16 positions ξ of the transformed tiles are 16 independent GEMMs
//! `M_ξ = U_ξ · V_ξ` over the input channels (fer's own GEMM, [`crate::panel`]), and
//! `Y = Aᵀ M A` turns each tile back into 2x2 outputs.
//!
//! The transforms only add and halve, so the result differs from the direct sum by rounding
//! alone (the tests bound it against f64 loops); the order of every sum is fixed, so results
//! repeat bit for bit. bf16 keeps the direct GEMM: its operands carry 8 bits, and the transforms
//! would round them again.

use rayon::prelude::*;

use crate::conv::{ConvShape, scratch};
use crate::panel::{Left, Mode, PackedA, Strided, gemm_with};

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

/// `U_ξ = G g Gᵀ` for every (output, input) channel pair, packed as 16 left operands.
fn transformed_weights(w: &[f32], s: &ConvShape) -> Vec<PackedA> {
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
    (0..16).into_par_iter().map(|xi| PackedA::new(Mode::F32, s.cout, s.cin, |co, ci| u[(co * s.cin + ci) * 16 + xi])).collect()
}

/// `conv(x, w)` for a shape that [`fits`], then `finish(plane, channel)` on each output plane
/// (bias, BatchNorm's scale and shift, LeakyReLU: the caller's epilogue), images split across
/// the cores in groups.
pub(crate) fn forward(x: &[f32], w: &[f32], s: &ConvShape, finish: &(impl Fn(&mut [f32], usize) + Sync)) -> Vec<f32> {
    assert!(fits(s) && Mode::F32.available(), "winograd: {s:?} is not a 3x3 'same' convolution on an AVX-512 CPU");
    assert_eq!(x.len(), s.input_len(), "winograd: input length does not match {s:?}");
    assert_eq!(w.len(), s.weight_len(), "winograd: weight length does not match {s:?}");
    let u = transformed_weights(w, s);
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
        let (mut v, mut m) = (scratch(16 * s.cin * TILES), scratch(16 * rows * TILES));
        let total = images * tiles_per_image;
        for first in (0..total).step_by(TILES) {
            let count = TILES.min(total - first);
            transform_input(input, s, first, count, &mut v);
            // The products for a slice of output channels at a time, so that they are still in
            // the cache when the output transform reads them.
            for co in (0..s.cout).step_by(rows) {
                let rows = rows.min(s.cout - co);
                for (xi, u) in u.iter().enumerate() {
                    let b = Strided { data: &v[xi * s.cin * TILES..(xi + 1) * s.cin * TILES], rs: TILES, cs: 1 };
                    let m = &mut m[xi * rows * TILES..(xi + 1) * rows * TILES];
                    gemm_with(Mode::F32, rows, count, s.cin, Left::Packed(u, co), &b, m, TILES, false);
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

/// `V = Bᵀ d B` for tiles `first..first + count` into `v[ξ][ci][tile - first]` (row stride
/// [`TILES`]).
fn transform_input(x: &[f32], s: &ConvShape, first: usize, count: usize, v: &mut [f32]) {
    for (image, row, col, len, at) in runs(s, first, count) {
        for ci in 0..s.cin {
            let channel = &x[(image * s.cin + ci) * s.h * s.w..(image * s.cin + ci + 1) * s.h * s.w];
            // The tile row's four input rows (2 row - 1 .. 2 row + 2); `None` outside the map.
            let rows: [Option<&[f32]>; 4] = std::array::from_fn(|i| {
                let r = (2 * row + i).checked_sub(1)?;
                (r < s.h).then(|| &channel[r * s.w..(r + 1) * s.w])
            });
            transform_input_run(rows, col, len, &mut v[ci * TILES + at..], s.cin * TILES);
        }
    }
}

/// [`transform_input`] for one run of `len` tiles from tile column `col`, of one channel:
/// `out[ξ · stride + t]`. Tile column t reads input columns 2t - 1 .. 2t + 2 of each row, zeros
/// outside the row. Sixteen tiles per step, one per vector lane.
fn transform_input_run(rows: [Option<&[f32]>; 4], col: usize, len: usize, out: &mut [f32], stride: usize) {
    let width = rows.iter().flatten().map(|r| r.len()).max().unwrap_or(0);
    assert!(rows.iter().flatten().all(|r| r.len() == width) && 2 * (col + len) <= width + 1, "winograd: input rows");
    assert!(len == 0 || out.len() >= 15 * stride + len, "winograd: transformed input too short");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the loads are masked to each row's columns and the stores to the run's tiles, both
    // bounded by the asserts above; this module runs only where AVX-512F is available (`forward`
    // asserts it).
    unsafe {
        input_avx512(rows, width, col, len, out, stride)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("winograd runs only on AVX-512 CPUs");
}

/// The lanes of a 16-wide load from column `from` that fall inside a row of `width` columns.
#[inline(always)]
fn inside(from: isize, width: usize) -> u16 {
    let lo = (-from).clamp(0, 16) as u32;
    let hi = (width as isize - from).clamp(0, 16) as u32;
    if hi <= lo { 0 } else { (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16 }
}

/// [`transform_input_run`]'s body; the caller checks the bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_avx512(rows: [Option<&[f32]>; 4], width: usize, col: usize, len: usize, out: &mut [f32], stride: usize) {
    use std::arch::x86_64::*;
    // SAFETY: see the caller; a masked-off lane is never read, so the row pointers may be offset
    // past their ends (with `wrapping_offset`, never dereferenced there).
    unsafe {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let dst = out.as_mut_ptr();
        for t0 in (0..len).step_by(16) {
            let mask: __mmask16 = if len - t0 >= 16 { 0xFFFF } else { (1u16 << (len - t0)) - 1 };
            let mut e = [[_mm512_setzero_ps(); 4]; 4];
            for (e, row) in e.iter_mut().zip(rows) {
                let Some(row) = row else { continue };
                // Tile t's row is columns 2t - 1 .. 2t + 2: (d0, d1) the even and odd columns
                // from 2t - 1, (d2, d3) those from 2t + 1.
                let from = 2 * (col + t0) as isize - 1;
                let load = |c: isize| _mm512_maskz_loadu_ps(inside(c, width), row.as_ptr().wrapping_offset(c));
                let (lo, hi, lo2, hi2) = (load(from), load(from + 16), load(from + 2), load(from + 18));
                let (d0, d1) = (_mm512_permutex2var_ps(lo, even, hi), _mm512_permutex2var_ps(lo, odd, hi));
                let (d2, d3) = (_mm512_permutex2var_ps(lo2, even, hi2), _mm512_permutex2var_ps(lo2, odd, hi2));
                // e = d B.
                *e = [_mm512_sub_ps(d0, d2), _mm512_add_ps(d1, d2), _mm512_sub_ps(d2, d1), _mm512_sub_ps(d1, d3)];
            }
            // V = Bᵀ e, column by column.
            let store = |xi: usize, v: __m512| _mm512_mask_storeu_ps(dst.add(xi * stride + t0), mask, v);
            #[allow(clippy::needless_range_loop)]
            for j in 0..4 {
                store(j, _mm512_sub_ps(e[0][j], e[2][j]));
                store(4 + j, _mm512_add_ps(e[1][j], e[2][j]));
                store(8 + j, _mm512_sub_ps(e[2][j], e[1][j]));
                store(12 + j, _mm512_sub_ps(e[1][j], e[3][j]));
            }
        }
    }
}

/// `Y = Aᵀ M A` for tiles `first..first + count` and output channels `channels` from
/// `m[ξ][co - channels.start][tile - first]` into the task's output `[image][co][h][w]`, dropping
/// the row and column past an odd map's edge.
fn transform_output(m: &[f32], s: &ConvShape, channels: std::ops::Range<usize>, first: usize, count: usize, out: &mut [f32]) {
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
    assert!(top.len() <= 2 * len && top.len() + 1 >= 2 * len && bottom.as_ref().is_none_or(|b| b.len() == top.len()), "winograd: output rows");
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
            let mask: __mmask16 = if len - t0 >= 16 { 0xFFFF } else { (1u16 << (len - t0)) - 1 };
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
            let lanes = |from: usize| -> __mmask16 {
                let n = columns.saturating_sub(from).min(16);
                if n == 16 { 0xFFFF } else { (1u16 << n) - 1 }
            };
            for (row, dst) in r.iter().zip(outputs) {
                let Some(dst) = dst else { continue };
                let even = _mm512_add_ps(_mm512_add_ps(row[0], row[1]), row[2]);
                let odd = _mm512_sub_ps(_mm512_sub_ps(row[1], row[2]), row[3]);
                _mm512_mask_storeu_ps(dst.add(2 * t0), lanes(2 * t0), _mm512_permutex2var_ps(even, low, odd));
                _mm512_mask_storeu_ps(dst.add(2 * t0 + 16), lanes(2 * t0 + 16), _mm512_permutex2var_ps(even, high, odd));
            }
        }
    }
}
