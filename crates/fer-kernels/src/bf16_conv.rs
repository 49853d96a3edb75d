//! A convolution's im2col operand for the bf16 GEMM, packed straight from a padded copy of the
//! input instead of from an `f32` im2col matrix.
//!
//! Why: the im2col matrix holds every input value `kh x kw` times (9x for 3x3 kernels): writing
//! it in `f32` and reading it back to round and pair it for the GEMM moved three times the bytes
//! the GEMM itself reads, and was a quarter of a bf16 training step. Here the input is rounded
//! and laid out once per image group, already in the GEMM's pairs, with the padding's zeros
//! written in, so that packing a panel is plain copies (forward) or gathers (weight gradient)
//! with no bounds tests and no rounding.
//!
//! Both operands multiply exactly the values the `f32`-im2col path multiplies (the same rounded
//! inputs and zeros), so the bf16 path's accuracy is unchanged; [`ChannelPairs`] sums the patch
//! in a different order (channel pairs innermost), [`PixelPairs`] in the same order.

use crate::bf16::{NR, Right, overwrite, pair, round_bits};
use crate::conv::ConvShape;

/// Rows and columns of the input with its padding written in.
fn padded(s: &ConvShape) -> (usize, usize) {
    (s.h + 2 * s.pad_h, s.w + 2 * s.pad_w)
}

/// The forward convolution's im2col matrix (`patch` rows by `images x plane` columns) with its
/// rows reordered so that each GEMM pair is two input channels at the same kernel tap: row
/// `2 (c · taps + t) + h` is channel `2c + h` at tap `t`. The weights' columns must follow the
/// same order ([`weight_order`]). Needs an even number of input channels.
pub struct ChannelPairs {
    /// `[image][channel pair][padded row][padded column]`, each lane the pair of channels.
    data: Vec<u32>,
    s: ConvShape,
}

/// Column `k` of the GEMM's weight operand in [`ChannelPairs`]' order: the index into a
/// `[cout, cin, kh, kw]` weight row that goes there.
pub fn weight_order(s: &ConvShape, k: usize) -> usize {
    let taps = s.kh * s.kw;
    let p = k / 2;
    (2 * (p / taps) + k % 2) * taps + p % taps
}

impl ChannelPairs {
    /// Whether a convolution of this shape can be packed this way.
    pub fn fits(s: &ConvShape) -> bool {
        s.cin % 2 == 0 && s.plane() > 0
    }

    /// From `images` consecutive NCHW images of shape `s`.
    pub fn new(x: &[f32], s: &ConvShape, images: usize) -> Self {
        assert!(Self::fits(s) && x.len() >= images * s.cin * s.h * s.w, "channel pairs: input does not fit {s:?}");
        let (hp, wp) = padded(s);
        let cpairs = s.cin / 2;
        let mut data = vec![0u32; images * cpairs * hp * wp];
        let plane = s.h * s.w;
        for (gc, dst) in data.chunks_exact_mut(hp * wp).enumerate() {
            let (g, c) = (gc / cpairs, gc % cpairs);
            let lo = &x[(g * s.cin + 2 * c) * plane..][..plane];
            let hi = &x[(g * s.cin + 2 * c + 1) * plane..][..plane];
            for y in 0..s.h {
                let row = &mut dst[(y + s.pad_h) * wp + s.pad_w..][..s.w];
                pair_rows(row, &lo[y * s.w..(y + 1) * s.w], &hi[y * s.w..(y + 1) * s.w]);
            }
        }
        ChannelPairs { data, s: *s }
    }
}

/// `dst[i] = pair(lo[i], hi[i])`, compiled for AVX-512 where the CPU has it.
fn pair_rows(dst: &mut [u32], lo: &[f32], hi: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::bf16::available() {
        // SAFETY: the CPU has the features (checked just above).
        unsafe { pair_rows_avx512(dst, lo, hi) };
        return;
    }
    dst.iter_mut().zip(lo).zip(hi).for_each(|((d, &l), &h)| *d = pair(l, h));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pair_rows_avx512(dst: &mut [u32], lo: &[f32], hi: &[f32]) {
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

impl Right for ChannelPairs {
    fn pack(&self, k0: usize, k1: usize, n0: usize, n1: usize, out: &mut Vec<u32>) {
        let s = &self.s;
        let (hp, wp) = padded(s);
        let taps = s.kh * s.kw;
        debug_assert!(k0 % 2 == 0 && k1 % 2 == 0, "channel pairs come whole");
        let pairs = (k1 - k0) / 2;
        let strips = (n1 - n0).div_ceil(NR);
        overwrite(out, strips * pairs * NR);
        for (t, strip) in out.chunks_exact_mut(pairs * NR).enumerate() {
            let first = n0 + t * NR;
            let cols = NR.min(n1 - first);
            let runs = runs(s, s.cin / 2, first, cols);
            for (p, dst) in strip.chunks_exact_mut(NR).enumerate() {
                let q = k0 / 2 + p;
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
/// `patch` columns), from a bf16 copy of the padded input: two consecutive output pixels of one
/// row read two neighbouring input values at every tap, i.e. one 32-bit load holds a GEMM pair.
/// Needs an even output width (pairs never straddle a row).
pub struct PixelPairs {
    /// `[image][channel][padded row][padded column]`, bf16 bits.
    data: Vec<u16>,
    s: ConvShape,
}

impl PixelPairs {
    pub fn fits(s: &ConvShape) -> bool {
        s.out_w() % 2 == 0 && s.plane() > 0 && {
            let (hp, wp) = padded(s);
            s.n * s.cin * hp * wp < i32::MAX as usize / 2
        }
    }

    pub fn new(x: &[f32], s: &ConvShape, images: usize) -> Self {
        assert!(Self::fits(s) && x.len() >= images * s.cin * s.h * s.w, "pixel pairs: input does not fit {s:?}");
        let (hp, wp) = padded(s);
        let mut data = vec![0u16; images * s.cin * hp * wp + 1];
        for (gc, dst) in data.chunks_exact_mut(hp * wp).enumerate() {
            let src = &x[gc * s.h * s.w..(gc + 1) * s.h * s.w];
            for y in 0..s.h {
                let row = &mut dst[(y + s.pad_h) * wp + s.pad_w..][..s.w];
                round_row(row, &src[y * s.w..(y + 1) * s.w]);
            }
        }
        PixelPairs { data, s: *s }
    }
}

fn round_row(dst: &mut [u16], src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::bf16::available() {
        // SAFETY: the CPU has the features (checked just above).
        unsafe { round_row_avx512(dst, src) };
        return;
    }
    dst.iter_mut().zip(src).for_each(|(d, &v)| *d = (round_bits(v) >> 16) as u16);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_row_avx512(dst: &mut [u16], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, &v)| *d = (round_bits(v) >> 16) as u16);
}

impl Right for PixelPairs {
    fn pack(&self, k0: usize, k1: usize, n0: usize, n1: usize, out: &mut Vec<u32>) {
        let s = &self.s;
        let (hp, wp) = padded(s);
        let (taps, ow, plane) = (s.kh * s.kw, s.out_w(), s.plane());
        debug_assert!(k0 % 2 == 0 && k1 % 2 == 0, "pixel pairs come whole");
        let pairs = (k1 - k0) / 2;
        let strips = (n1 - n0).div_ceil(NR);
        overwrite(out, strips * pairs * NR);
        let fast = crate::bf16::available();
        // The largest pixel offset read: the block's last pixel pair (offsets grow with pixels).
        let last = k1 - 2;
        let reach = (last / plane * s.cin * hp + last % plane / ow) * wp + last % ow;
        for (t, strip) in out.chunks_exact_mut(pairs * NR).enumerate() {
            let first = n0 + t * NR;
            let cols = NR.min(n1 - first);
            // Each column's (channel, tap) offset in the padded image, in bf16 elements.
            let mut offsets = [0i32; NR];
            for (j, o) in offsets.iter_mut().enumerate().take(cols) {
                let (c, tap) = ((first + j) / taps, (first + j) % taps);
                *o = ((c * hp + tap / s.kw) * wp + tap % s.kw) as i32;
            }
            let widest = offsets[..cols].iter().max().map_or(0, |&o| o as usize);
            assert!(reach + widest + 1 < self.data.len(), "pixel pairs: panel reaches past the input");
            for (p, dst) in strip.chunks_exact_mut(NR).enumerate() {
                let pixel = k0 + 2 * p;
                let (g, oy, ox) = (pixel / plane, pixel % plane / ow, pixel % ow);
                let data = &self.data[(g * s.cin * hp + oy) * wp + ox..];
                #[cfg(target_arch = "x86_64")]
                if fast {
                    // SAFETY: the CPU has the features; every offset's two elements are inside
                    // `data` (the assert above); `dst` holds NR lanes.
                    unsafe { gather_pairs_avx512(data, &offsets, cols, dst) };
                    continue;
                }
                let _ = fast;
                for (j, d) in dst.iter_mut().enumerate() {
                    let o = offsets[j] as usize;
                    *d = if j < cols { data[o] as u32 | (data[o + 1] as u32) << 16 } else { 0 };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
/// Lanes `j < cols` of `dst` from `data[offsets[j]..]` (two bf16 values each), the rest zero.
unsafe fn gather_pairs_avx512(data: &[u16], offsets: &[i32; NR], cols: usize, dst: &mut [u32]) {
    use std::arch::x86_64::*;
    for v in 0..NR / 16 {
        let width = cols.saturating_sub(16 * v).min(16);
        let mask: __mmask16 = if width == 16 { 0xFFFF } else { ((1u32 << width) - 1) as u16 };
        // SAFETY: the caller checked every offset's two elements are inside `data`; masked-off
        // lanes are not read; `dst` holds NR lanes.
        unsafe {
            let idx = _mm512_loadu_si512(offsets.as_ptr().add(16 * v).cast());
            let got = _mm512_mask_i32gather_epi32::<2>(_mm512_setzero_si512(), mask, idx, data.as_ptr().cast());
            _mm512_storeu_si512(dst.as_mut_ptr().add(16 * v).cast(), got);
        }
    }
}
