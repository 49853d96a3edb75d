//! Packing operands into the micro-kernel's panels: left operands into `MR`-row strips (or
//! row-major for the AMX tiles), right operands into `NR`-column strips, `f32` lanes or bf16
//! pairs. Each strided packer has a scalar twin (`*_with`) that the tests hold it to bit for bit.

use super::layout::{MR, Mode, NR, NV, Strided, TM, tile_lanes};
use crate::bf16::pair;
use crate::scratch::overwrite;
#[cfg(target_arch = "x86_64")]
use crate::simd::{even_odd, first_lanes, pair_lanes};

/// Packs rows `0..m` x k range `k0..k1` of the matrix `at(row, k)` into MR-row strips:
/// `[strip][lane][MR]`, rows past `m` and the odd k past `k1` as zeros.
#[inline(always)]
pub(super) fn pack_a_with(
    mode: Mode,
    m: usize,
    k0: usize,
    k1: usize,
    out: &mut [u32],
    at: impl Fn(usize, usize) -> f32,
) {
    let lanes = mode.lanes(k0, k1);
    let per = mode.per_lane();
    for (s, strip) in out.chunks_exact_mut(lanes * MR).enumerate() {
        for r in 0..MR {
            let row = s * MR + r;
            if row >= m {
                (0..lanes).for_each(|p| strip[p * MR + r] = 0);
                continue;
            }
            for p in 0..lanes {
                let k = k0 + per * p;
                let hi = if per == 2 && k + 1 < k1 { at(row, k + 1) } else { 0.0 };
                strip[p * MR + r] = mode.lane(at(row, k), hi);
            }
        }
    }
}

/// [`pack_a_with`] of a strided matrix. (Compiled for AVX-512 so the rounding vectorises; only
/// called where the mode is available.)
///
/// # Safety
/// The CPU has AVX-512F (every panel mode needs it; callers check [`Mode::available`]); `a`
/// holds the `m` x `k1` matrix it describes (checked by `gemm_with`): [`pack_rows`] loads from it
/// unchecked.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
pub(super) unsafe fn pack_a(mode: Mode, a: Strided, m: usize, k0: usize, k1: usize, out: &mut Vec<u32>) {
    overwrite(out, m.div_ceil(MR) * mode.lanes(k0, k1) * MR);
    #[cfg(target_arch = "x86_64")]
    if a.cs == 1 {
        // SAFETY: the caller runs with AVX-512F (every mode needs it); `pack_rows` bounds its
        // reads by `a.check`, done by `gemm_with` for rows below `m` and k below `k1`.
        unsafe { pack_rows(mode, a, m, k0, k1, out) };
        return;
    }
    pack_a_with(mode, m, k0, k1, out, |i, k| a.at(i, k));
}

/// Packs rows `0..m` x k range `k0..k1` of the matrix `at(row, k)` for the AMX tiles: row-major
/// bf16 pairs, [`tile_lanes`] lanes per row and rows up to a multiple of [`TM`], zeros past the
/// matrix (so a tile step past the last lane or row adds nothing).
#[inline(always)]
pub(super) fn pack_tiles_with(m: usize, k0: usize, k1: usize, out: &mut [u32], at: impl Fn(usize, usize) -> f32) {
    let (lanes, width) = (Mode::Bf16.lanes(k0, k1), tile_lanes(Mode::Bf16.lanes(k0, k1)));
    for (row, dst) in out.chunks_exact_mut(width).enumerate() {
        for (p, d) in dst.iter_mut().enumerate() {
            let k = k0 + 2 * p;
            *d = if row < m && p < lanes { pair(at(row, k), if k + 1 < k1 { at(row, k + 1) } else { 0.0 }) } else { 0 };
        }
    }
}

/// [`pack_tiles_with`] of a strided matrix; rows stored contiguously (the usual case) sixteen
/// lanes per step, rounded as [`crate::bf16::round_bits`] rounds (the same bits).
///
/// # Safety
/// The CPU has AVX-512F; `a` holds the `m` x `k1` matrix it describes (checked by `gemm_with`):
/// the contiguous path loads rows unchecked, masked to `k < k1`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pack_tiles(a: Strided, m: usize, k0: usize, k1: usize, out: &mut Vec<u32>) {
    use std::arch::x86_64::*;
    let width = tile_lanes(Mode::Bf16.lanes(k0, k1));
    overwrite(out, m.div_ceil(TM) * TM * width);
    if a.cs != 1 {
        pack_tiles_with(m, k0, k1, out, |i, k| a.at(i, k));
        return;
    }
    let within = |k: usize| -> __mmask16 { first_lanes(k1.saturating_sub(k)) };
    for (row, dst) in out.chunks_exact_mut(width).enumerate() {
        for p0 in (0..width).step_by(16) {
            // SAFETY: the loads are masked to k < k1 of a row below m, inside `a` (checked by
            // `gemm_with`); the store is 16 lanes of `dst`, whose width is a multiple of 16.
            unsafe {
                let value = if row >= m {
                    _mm512_setzero_si512()
                } else {
                    let (base, k) = (a.data.as_ptr().add(row * a.rs), k0 + 2 * p0);
                    let lo = _mm512_maskz_loadu_epi32(within(k), base.wrapping_add(k).cast());
                    let hi = _mm512_maskz_loadu_epi32(within(k + 16), base.wrapping_add(k + 16).cast());
                    let (even, odd) = even_odd(lo, hi);
                    pair_lanes(even, odd)
                };
                _mm512_storeu_si512(dst.as_mut_ptr().add(p0).cast(), value);
            }
        }
    }
}

/// [`pack_a_with`] for rows stored contiguously (a convolution's output gradient, a dense layer's
/// input): sixteen lanes of a row per step, rounded as [`crate::bf16::round_bits`] rounds
/// (integer arithmetic, so bit for bit the scalar result), eight rows at a time turned into the
/// strip's `[lane][row]` order through a small buffer. Element by element this was 4% of a bf16
/// training step.
///
/// # Safety
/// The CPU has AVX-512F; `a` holds the `m` x `k1` matrix it describes, rows contiguous
/// (checked by the callers): loads are unchecked, masked to `k < k1`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_rows(mode: Mode, a: Strided, m: usize, k0: usize, k1: usize, out: &mut [u32]) {
    use std::arch::x86_64::*;
    let lanes = mode.lanes(k0, k1);
    let per = mode.per_lane();
    assert!(out.len() >= m.div_ceil(MR) * lanes * MR && a.cs == 1);
    // SAFETY: every load is masked to k < k1 of a row below m, inside `a` (checked by the caller);
    // every store lies in `out` (asserted above) or in `block`.
    unsafe {
        // Lane p of row r is block[r * 16 + p]; output vector q holds lanes 2q and 2q + 1 of the
        // eight rows.
        let turn = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 1, 17, 33, 49, 65, 81, 97, 113);
        let mut block = [0u32; 16 * MR];
        let within = |k: usize| -> __mmask16 { first_lanes(k1.saturating_sub(k)) };
        for strip in 0..m.div_ceil(MR) {
            let dst = out.as_mut_ptr().add(strip * lanes * MR);
            for p0 in (0..lanes).step_by(16) {
                for r in 0..MR {
                    let row = strip * MR + r;
                    let value = if row >= m {
                        _mm512_setzero_si512()
                    } else {
                        let base = a.data.as_ptr().add(row * a.rs);
                        let k = k0 + per * p0;
                        match mode {
                            Mode::F32 => _mm512_maskz_loadu_epi32(within(k), base.add(k).cast()),
                            Mode::Bf16 => {
                                let lo = _mm512_maskz_loadu_epi32(within(k), base.wrapping_add(k).cast());
                                let hi = _mm512_maskz_loadu_epi32(within(k + 16), base.wrapping_add(k + 16).cast());
                                let (even, odd) = even_odd(lo, hi);
                                pair_lanes(even, odd)
                            }
                        }
                    };
                    _mm512_storeu_si512(block.as_mut_ptr().add(r * 16).cast(), value);
                }
                // Lanes p0 .. p0 + 16 of the strip, eight rows each (those past `lanes` dropped).
                for q in 0..8 {
                    let p = p0 + 2 * q;
                    if p >= lanes {
                        break;
                    }
                    let column = _mm512_i32gather_epi32::<4>(
                        _mm512_add_epi32(turn, _mm512_set1_epi32(2 * q as i32)),
                        block.as_ptr().cast(),
                    );
                    let keep: __mmask16 = if p + 1 < lanes { 0xFFFF } else { 0x00FF };
                    _mm512_mask_storeu_epi32(dst.add(p * MR).cast(), keep, column);
                }
            }
        }
    }
}

/// Packs k range `k0..k1` x columns `n0..n1` of `b` into NR-column strips: `[strip][lane][NR]`.
///
/// # Safety
/// The CPU has AVX-512F (every panel mode needs it). Every read of `b` is bounds-checked or, for
/// the gathers, checked first by [`gathers`].
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
pub(super) unsafe fn pack_b(mode: Mode, b: Strided, k0: usize, k1: usize, n0: usize, n1: usize, out: &mut Vec<u32>) {
    let lanes = mode.lanes(k0, k1);
    let per = mode.per_lane();
    let strips = (n1 - n0).div_ceil(NR);
    overwrite(out, strips * lanes * NR);
    let gather = b.cs != 1 && gathers(b, k1, n1);
    for t in 0..strips {
        let strip = &mut out[t * lanes * NR..(t + 1) * lanes * NR];
        let cols = NR.min(n1 - n0 - t * NR);
        for p in 0..lanes {
            let k = k0 + per * p;
            let has_hi = per == 2 && k + 1 < k1;
            let (dst, past) = strip[p * NR..(p + 1) * NR].split_at_mut(cols);
            past.fill(0);
            if b.cs == 1 {
                let lo = &b.data[k * b.rs + n0 + t * NR..][..cols];
                if has_hi {
                    let hi = &b.data[(k + 1) * b.rs + n0 + t * NR..][..cols];
                    for ((d, &l), &h) in dst.iter_mut().zip(lo).zip(hi) {
                        *d = pair(l, h);
                    }
                } else {
                    for (d, &l) in dst.iter_mut().zip(lo) {
                        *d = mode.lane(l, 0.0);
                    }
                }
            } else if cols == NR && gather {
                // A transposed operand (the weight gradient's im2col, a dense layer's weights in
                // its input gradient): 16 columns per gather.
                #[cfg(target_arch = "x86_64")]
                for v in 0..NV {
                    let (col, lanes16) = (n0 + t * NR + 16 * v, &mut dst[16 * v..16 * v + 16]);
                    // SAFETY: `gathers` bounds every index the gathers read; `dst` holds NR lanes.
                    unsafe {
                        match mode {
                            Mode::Bf16 => gather_pairs(b, k, has_hi, col, lanes16),
                            Mode::F32 => gather_f32(b, k, col, lanes16),
                        }
                    }
                }
            } else {
                for (j, d) in dst.iter_mut().enumerate() {
                    let col = n0 + t * NR + j;
                    let hi = if has_hi { b.at(k + 1, col) } else { 0.0 };
                    *d = mode.lane(b.at(k, col), hi);
                }
            }
        }
    }
}

/// Whether [`gather_pairs`] may read `b`'s rows below `k1` and columns below `n1`: offsets
/// within one image of 32-bit indices, and every element in the slice.
fn gathers(b: Strided, k1: usize, n1: usize) -> bool {
    cfg!(target_arch = "x86_64")
        && n1 * b.cs < i32::MAX as usize
        && k1 > 0
        && n1 > 0
        && (k1 - 1) * b.rs + (n1 - 1) * b.cs < b.data.len()
}

/// The bf16 pairs (k, k + 1) of 16 consecutive columns from `col`: two gathers, rounded as
/// [`crate::bf16::round_bits`] rounds (integer arithmetic, so the result is the same bit for bit).
///
/// # Safety
/// The CPU has AVX-512F, and [`gathers`] holds for `b` with `k` (and `k + 1` when `has_hi`) and
/// columns `col..col + 16`: the gathers read those elements unchecked.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_pairs(b: Strided, k: usize, has_hi: bool, col: usize, dst: &mut [u32]) {
    use std::arch::x86_64::*;
    assert!(dst.len() >= 16);
    let offsets = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(b.cs as i32),
    );
    // SAFETY: the caller checked (via `gathers`) that every offset below is inside `b.data`.
    unsafe {
        let base = b.data.as_ptr().add(k * b.rs + col * b.cs);
        let lo = _mm512_i32gather_epi32::<4>(offsets, base.cast());
        let hi =
            if has_hi { _mm512_i32gather_epi32::<4>(offsets, base.add(b.rs).cast()) } else { _mm512_setzero_si512() };
        _mm512_storeu_si512(dst.as_mut_ptr().cast(), pair_lanes(lo, hi));
    }
}

/// 16 consecutive columns of row `k` from `col`: one gather.
///
/// # Safety
/// The CPU has AVX-512F, and [`gathers`] holds for `b` with row `k` and columns `col..col + 16`:
/// the gather reads those elements unchecked.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_f32(b: Strided, k: usize, col: usize, dst: &mut [u32]) {
    use std::arch::x86_64::*;
    assert!(dst.len() >= 16);
    let offsets = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(b.cs as i32),
    );
    // SAFETY: the caller checked (via `gathers`) that every offset below is inside `b.data`.
    unsafe {
        let base = b.data.as_ptr().add(k * b.rs + col * b.cs);
        _mm512_storeu_si512(dst.as_mut_ptr().cast(), _mm512_i32gather_epi32::<4>(offsets, base.cast()));
    }
}
