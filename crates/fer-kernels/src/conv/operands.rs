//! A convolution's im2col operand for fer's GEMM ([`crate::gemm`]), packed straight from a
//! padded copy of the input instead of from an im2col matrix.
//!
//! Why: the im2col matrix holds every input value `kh x kw` times (9x for 3x3 kernels): writing
//! it out and reading it back to pack it moved three times the bytes the GEMM itself reads, and
//! was a quarter of a bf16 training step. Here the input is laid out once per image group in the
//! GEMM's lanes (rounded and paired in bf16), with the padding's zeros written in, so that
//! packing a panel is plain copies (forward) or gathers (weight gradient), with no bounds tests
//! and no rounding.
//!
//! Both operands multiply exactly the values the im2col path multiplies (the same inputs and
//! zeros, rounded the same way in bf16). [`PaddedInput`] in bf16 sums the patch in another order
//! (channel pairs innermost); everything else sums in the im2col path's order.

use crate::bf16::{pair, round_bits};
use crate::gemm::{Mode, NR, Right};
use crate::scratch::overwrite;
use crate::shape::ConvShape;

/// Rows and columns of the input with its padding written in.
fn padded(s: &ConvShape) -> (usize, usize) {
    (s.h + 2 * s.pad_h, s.w + 2 * s.pad_w)
}

/// The forward convolution's im2col matrix (`patch` rows by `images x plane` columns). In f32
/// its rows are the im2col matrix's; in bf16 they are reordered so that each lane is two input
/// channels at the same kernel tap: row `2 (c · taps + t) + h` is channel `2c + h` at tap `t`.
/// The weights' columns follow the same order ([`weight_order`]).
pub struct PaddedInput {
    mode: Mode,
    /// `[image][channel (f32) or channel pair (bf16)][padded row][padded column]`.
    data: Vec<u32>,
    s: ConvShape,
}

/// Column `k` of the GEMM's weight operand in [`PaddedInput`]'s order: the index into a
/// `[cout, cin, kh, kw]` weight row that goes there.
pub fn weight_order(mode: Mode, s: &ConvShape, k: usize) -> usize {
    match mode {
        Mode::F32 => k,
        Mode::Bf16 => {
            let taps = s.kh * s.kw;
            let p = k / 2;
            (2 * (p / taps) + k % 2) * taps + p % taps
        }
    }
}

impl PaddedInput {
    /// Whether a convolution of this shape can be packed this way (bf16 pairs channels, so it
    /// needs an even number of them).
    pub fn fits(mode: Mode, s: &ConvShape) -> bool {
        s.cin.is_multiple_of(mode.per_lane()) && s.plane() > 0
    }

    /// From `images` consecutive NCHW images of shape `s`.
    pub fn new(mode: Mode, x: &[f32], s: &ConvShape, images: usize) -> Self {
        assert!(Self::fits(mode, s) && x.len() >= images * s.cin * s.h * s.w, "padded input: input does not fit {s:?}");
        let (hp, wp) = padded(s);
        let per = mode.per_lane();
        let groups = s.cin / per;
        let mut data = vec![0u32; images * groups * hp * wp];
        let plane = s.h * s.w;
        for (gc, dst) in data.chunks_exact_mut(hp * wp).enumerate() {
            let (g, c) = (gc / groups, gc % groups);
            let lo = &x[(g * s.cin + per * c) * plane..][..plane];
            let hi = &x[(g * s.cin + per * c + per - 1) * plane..][..plane];
            for y in 0..s.h {
                let row = &mut dst[(y + s.pad_h) * wp + s.pad_w..][..s.w];
                let (lo, hi) = (&lo[y * s.w..(y + 1) * s.w], &hi[y * s.w..(y + 1) * s.w]);
                match mode {
                    Mode::Bf16 => pair_rows(row, lo, hi),
                    Mode::F32 => row.iter_mut().zip(lo).for_each(|(d, v)| *d = v.to_bits()),
                }
            }
        }
        PaddedInput { mode, data, s: *s }
    }
}

/// `dst[i] = pair(lo[i], hi[i])`, compiled for AVX-512 where the CPU has it.
fn pair_rows(dst: &mut [u32], lo: &[f32], hi: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the feature (checked just above).
        unsafe { pair_rows_avx512(dst, lo, hi) };
        return;
    }
    dst.iter_mut().zip(lo).zip(hi).for_each(|((d, &l), &h)| *d = pair(l, h));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn pair_rows_avx512(dst: &mut [u32], lo: &[f32], hi: &[f32]) {
    dst.iter_mut().zip(lo).zip(hi).for_each(|((d, &l), &h)| *d = pair(l, h));
}

/// Where each of a panel strip's columns starts in the padded image: runs of consecutive output
/// pixels of one image row, as (first lane, offset of the run's first pixel at tap (0, 0) and
/// channel 0, length).
fn runs(s: &ConvShape, channels: usize, first_column: usize, columns: usize) -> Vec<(usize, usize, usize)> {
    let (hp, wp) = padded(s);
    let (ow, plane) = (s.out_w(), s.plane());
    let mut runs = Vec::new();
    let mut lane = 0;
    while lane < columns {
        let n = first_column + lane;
        let (g, oy, ox) = (n / plane, n % plane / ow, n % ow);
        let len = (ow - ox).min(columns - lane);
        runs.push((lane, (g * channels * hp + oy) * wp + ox, len));
        lane += len;
    }
    runs
}

impl Right for PaddedInput {
    fn pack(&self, mode: Mode, k0: usize, k1: usize, n0: usize, n1: usize, out: &mut Vec<u32>) {
        assert_eq!(mode, self.mode, "padded input: packed for another mode");
        let s = &self.s;
        let (hp, wp) = padded(s);
        let taps = s.kh * s.kw;
        let per = mode.per_lane();
        assert!(k0.is_multiple_of(per) && k1.is_multiple_of(per), "padded input: channel pairs come whole");
        let lanes = mode.lanes(k0, k1);
        let strips = (n1 - n0).div_ceil(NR);
        overwrite(out, strips * lanes * NR);
        for (t, strip) in out.chunks_exact_mut(lanes * NR).enumerate() {
            let first = n0 + t * NR;
            let cols = NR.min(n1 - first);
            let runs = runs(s, s.cin / per, first, cols);
            for (p, dst) in strip.chunks_exact_mut(NR).enumerate() {
                let q = k0 / per + p;
                let (c, tap) = (q / taps, q % taps);
                let at = (c * hp + tap / s.kw) * wp + tap % s.kw;
                for &(lane, start, len) in &runs {
                    dst[lane..lane + len].copy_from_slice(&self.data[start + at..start + at + len]);
                }
                dst[cols..].fill(0);
            }
        }
    }
}

/// The weight gradient's right operand, the transposed im2col matrix (`images x plane` rows by
/// `patch` columns), from a copy of the padded input. In bf16 two consecutive output pixels of a
/// row read two neighbouring input values at every tap, so one 32-bit load is a lane; that needs
/// an even output width (pairs never straddle a row).
pub struct PaddedPlanes {
    mode: Mode,
    /// `[image][channel][padded row][padded column]`: bf16 bits in bf16, `f32` bits in f32.
    data: Planes,
    s: ConvShape,
}

enum Planes {
    Bf16(Vec<u16>),
    F32(Vec<u32>),
}

impl PaddedPlanes {
    pub fn fits(mode: Mode, s: &ConvShape) -> bool {
        s.out_w().is_multiple_of(mode.per_lane()) && s.plane() > 0 && {
            let (hp, wp) = padded(s);
            s.n * s.cin * hp * wp < i32::MAX as usize / 2
        }
    }

    pub fn new(mode: Mode, x: &[f32], s: &ConvShape, images: usize) -> Self {
        assert!(
            Self::fits(mode, s) && x.len() >= images * s.cin * s.h * s.w,
            "padded planes: input does not fit {s:?}"
        );
        let (hp, wp) = padded(s);
        let len = images * s.cin * hp * wp + 1;
        let data = match mode {
            Mode::Bf16 => {
                let mut data = vec![0u16; len];
                each_row(x, s, images, |at, row| round_row(&mut data[at..at + row.len()], row));
                Planes::Bf16(data)
            }
            Mode::F32 => {
                let mut data = vec![0u32; len];
                each_row(x, s, images, |at, row| {
                    data[at..at + row.len()].iter_mut().zip(row).for_each(|(d, v)| *d = v.to_bits())
                });
                Planes::F32(data)
            }
        };
        PaddedPlanes { mode, data, s: *s }
    }

    fn len(&self) -> usize {
        match &self.data {
            Planes::Bf16(d) => d.len(),
            Planes::F32(d) => d.len(),
        }
    }
}

/// Each input row of `images` images, with where it starts in the padded planes.
fn each_row(x: &[f32], s: &ConvShape, images: usize, mut f: impl FnMut(usize, &[f32])) {
    let (hp, wp) = padded(s);
    for (gc, src) in x[..images * s.cin * s.h * s.w].chunks_exact(s.h * s.w).enumerate() {
        for (y, row) in src.chunks_exact(s.w).enumerate() {
            f(gc * hp * wp + (y + s.pad_h) * wp + s.pad_w, row);
        }
    }
}

fn round_row(dst: &mut [u16], src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the feature (checked just above).
        unsafe { round_row_avx512(dst, src) };
        return;
    }
    dst.iter_mut().zip(src).for_each(|(d, &v)| *d = (round_bits(v) >> 16) as u16);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn round_row_avx512(dst: &mut [u16], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, &v)| *d = (round_bits(v) >> 16) as u16);
}

impl Right for PaddedPlanes {
    fn pack(&self, mode: Mode, k0: usize, k1: usize, n0: usize, n1: usize, out: &mut Vec<u32>) {
        assert_eq!(mode, self.mode, "padded planes: packed for another mode");
        assert!(mode.available(), "padded planes: {mode:?} needs a CPU feature this one lacks");
        let s = &self.s;
        let (hp, wp) = padded(s);
        let (taps, ow, plane) = (s.kh * s.kw, s.out_w(), s.plane());
        let per = mode.per_lane();
        assert!(k0.is_multiple_of(per) && k1.is_multiple_of(per), "padded planes: pixel pairs come whole");
        let lanes = mode.lanes(k0, k1);
        let strips = (n1 - n0).div_ceil(NR);
        overwrite(out, strips * lanes * NR);
        // The largest pixel offset read: the block's last lane (offsets grow with pixels).
        let last = k1 - per;
        let reach = (last / plane * s.cin * hp + last % plane / ow) * wp + last % ow;
        for (t, strip) in out.chunks_exact_mut(lanes * NR).enumerate() {
            let first = n0 + t * NR;
            let cols = NR.min(n1 - first);
            // Each column's (channel, tap) offset in the padded image, in elements.
            let mut offsets = [0i32; NR];
            for (j, o) in offsets.iter_mut().enumerate().take(cols) {
                let (c, tap) = ((first + j) / taps, (first + j) % taps);
                *o = ((c * hp + tap / s.kw) * wp + tap % s.kw) as i32;
            }
            let widest = offsets[..cols].iter().max().map_or(0, |&o| o as usize);
            assert!(reach + widest + per - 1 < self.len(), "padded planes: panel reaches past the input");
            for (p, dst) in strip.chunks_exact_mut(NR).enumerate() {
                let pixel = k0 + per * p;
                let (g, oy, ox) = (pixel / plane, pixel % plane / ow, pixel % ow);
                let base = (g * s.cin * hp + oy) * wp + ox;
                // SAFETY: the mode is available (so the CPU has AVX-512F); every offset's lane
                // is inside the data from `base` (the assert above); `dst` holds NR lanes.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    match &self.data {
                        Planes::Bf16(d) => gather_avx512::<2>(d[base..].as_ptr().cast(), &offsets, cols, dst),
                        Planes::F32(d) => gather_avx512::<4>(d[base..].as_ptr().cast(), &offsets, cols, dst),
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("no panel GEMM mode runs off x86-64 ({base}, {dst:?})");
            }
        }
    }
}

/// Lanes `j < cols` of `dst`: the 32 bits at `data + SCALE * offsets[j]` bytes; the rest zero.
///
/// # Safety
/// The CPU has AVX-512F, and for every lane `j < cols` the four bytes at
/// `data + SCALE * offsets[j]` are readable (masked-off lanes are not read).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_avx512<const SCALE: i32>(data: *const u8, offsets: &[i32; NR], cols: usize, dst: &mut [u32]) {
    use std::arch::x86_64::*;
    assert!(dst.len() >= NR);
    for v in 0..NR / 16 {
        let width = cols.saturating_sub(16 * v).min(16);
        let mask: __mmask16 = if width == 16 { 0xFFFF } else { ((1u32 << width) - 1) as u16 };
        // SAFETY: the caller guarantees every unmasked lane's four bytes are readable; masked-off
        // lanes are not read; `dst` holds NR lanes (asserted).
        unsafe {
            let idx = _mm512_loadu_si512(offsets.as_ptr().add(16 * v).cast());
            let got = _mm512_mask_i32gather_epi32::<SCALE>(_mm512_setzero_si512(), mask, idx, data.cast());
            _mm512_storeu_si512(dst.as_mut_ptr().add(16 * v).cast(), got);
        }
    }
}
