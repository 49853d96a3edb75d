//! Mixed-precision GEMM: `f32` operands rounded to bfloat16, products accumulated in `f32`, on
//! CPUs with AVX512-BF16 (`vdpbf16ps`: Zen 4 and later, Cooper Lake, Sapphire Rapids and later).
//!
//! One `vdpbf16ps` does 16 lanes x 2 multiply-adds, twice an AVX-512 FMA's work, and bf16
//! operands halve the bytes the packed panels take. Each 32-bit lane of a packed panel holds two
//! consecutive `k` values (low half `k`, high half `k + 1`), which is the pairing the instruction
//! multiplies. The caller's operands stay `f32` everywhere else (master weights, optimizer
//! state, activations); only the GEMMs see bf16, as PyTorch's autocast does.
//!
//! The summation order is fixed (k blocks in order, pairs in order within one lane), so results
//! repeat bit for bit; they differ from the `f32` path by bf16's 8-bit mantissa (relative error
//! about 2^-9 per operand).

/// Rows of the micro-tile (broadcast A pairs).
const MR: usize = 8;
/// 16-lane vectors per micro-tile row.
const NV: usize = 3;
/// Columns of the micro-tile.
pub(crate) const NR: usize = 16 * NV;
/// `k` values per packed block (pairs = KC / 2); A's strip (8 x 256 x 2 bytes) stays in L1.
const KC: usize = 256;
/// Columns per packed B block (256 x 768 x 2 bytes = 384 KiB, within Zen 4's 1 MiB L2).
const NC: usize = 768;

/// Whether this CPU runs the bf16 GEMM.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `x` rounded to bfloat16 (round to nearest, ties to even), as the upper 16 bits of an `f32`.
#[inline(always)]
pub fn round_bits(x: f32) -> u32 {
    let u = x.to_bits();
    u.wrapping_add(0x7FFF + ((u >> 16) & 1)) & 0xFFFF_0000
}

/// `x` rounded to bfloat16 and back: what the GEMM multiplies.
pub fn round(x: f32) -> f32 {
    f32::from_bits(round_bits(x))
}

/// The lane holding `lo` (k) and `hi` (k + 1).
#[inline(always)]
pub(crate) fn pair(lo: f32, hi: f32) -> u32 {
    round_bits(hi) | (round_bits(lo) >> 16)
}

/// A strided `f32` matrix: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl Strided<'_> {
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }

    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            assert!((rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len(), "bf16 gemm: {what} too small");
        }
    }
}

/// A vector of `len` elements the caller overwrites completely before reading any, reusing
/// `v`'s allocation: the packed panels are rewritten for every block, and zero-filling them
/// first was 4% of a training step.
pub(crate) fn overwrite(v: &mut Vec<u32>, len: usize) {
    v.clear();
    v.reserve(len);
    // SAFETY: u32 accepts any bit pattern, and every packer writes each lane (zeros past the
    // matrix's edge) before the micro-kernel reads it.
    unsafe { v.set_len(len) };
}

/// Pairs per packed k block starting at `k0` of a `k`-deep product.
fn block_pairs(k0: usize, k: usize) -> usize {
    ((k0 + KC).min(k) - k0).div_ceil(2)
}

/// Packs rows `0..m` x k range `k0..k1` of the matrix `at(row, k)` into MR-row strips:
/// `[strip][pair][MR]`, rows past `m` and the odd k past `k1` as zeros.
#[inline(always)]
fn pack_a_with(m: usize, k0: usize, k1: usize, out: &mut [u32], at: impl Fn(usize, usize) -> f32) {
    let pairs = (k1 - k0).div_ceil(2);
    for (s, strip) in out.chunks_exact_mut(pairs * MR).enumerate() {
        for r in 0..MR {
            let row = s * MR + r;
            if row >= m {
                (0..pairs).for_each(|p| strip[p * MR + r] = 0);
                continue;
            }
            for p in 0..pairs {
                let k = k0 + 2 * p;
                let hi = if k + 1 < k1 { at(row, k + 1) } else { 0.0 };
                strip[p * MR + r] = pair(at(row, k), hi);
            }
        }
    }
}

/// [`pack_a_with`] of a strided matrix. (Compiled for AVX-512 so the rounding vectorises; only
/// called where [`available`] holds.)
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f,avx512bf16"))]
unsafe fn pack_a(a: Strided, m: usize, k0: usize, k1: usize, out: &mut Vec<u32>) {
    overwrite(out, m.div_ceil(MR) * (k1 - k0).div_ceil(2) * MR);
    pack_a_with(m, k0, k1, out, |i, k| a.at(i, k));
}

/// A left operand packed once for every k block, for products that reuse it: a convolution's
/// weights are the left operand of every image group's GEMM, and used to be packed again for
/// each (6% of a training step).
pub struct PackedA {
    m: usize,
    k: usize,
    data: Vec<u32>,
}

impl PackedA {
    /// Packs the `m` x `k` matrix `at(row, k)`, k blocks in parallel.
    pub fn new(m: usize, k: usize, at: impl Fn(usize, usize) -> f32 + Sync) -> Self {
        use rayon::prelude::*;
        let strips = m.div_ceil(MR);
        let starts: Vec<usize> = (0..k).step_by(KC).collect();
        let mut data = Vec::new();
        overwrite(&mut data, strips * k.div_ceil(2) * MR);
        let mut blocks = Vec::with_capacity(starts.len());
        let mut rest = &mut data[..];
        for &k0 in &starts {
            let (block, tail) = rest.split_at_mut(strips * block_pairs(k0, k) * MR);
            blocks.push((k0, block));
            rest = tail;
        }
        blocks.into_par_iter().for_each(|(k0, block)| pack_a_with(m, k0, (k0 + KC).min(k), block, &at));
        PackedA { m, k, data }
    }

    /// Of a strided matrix.
    pub fn from_strided(a: Strided, m: usize, k: usize) -> Self {
        a.check(m, k, "a");
        PackedA::new(m, k, |i, j| a.at(i, j))
    }

    pub fn rows(&self) -> usize {
        self.m
    }

    /// Strips `first..first + count` of the k block starting at `k0`.
    fn strips(&self, k0: usize, first: usize, count: usize) -> &[u32] {
        let strips = self.m.div_ceil(MR);
        let offset = strips * MR * (k0 / 2);
        let pairs = block_pairs(k0, self.k);
        &self.data[offset + first * pairs * MR..offset + (first + count) * pairs * MR]
    }
}

/// The left operand of a product.
#[derive(Clone, Copy)]
pub enum Left<'a> {
    /// Packed block by block as the product goes.
    Strided(Strided<'a>),
    /// Rows `first..` of an operand packed once; `first` a multiple of 8 (the micro-tile).
    Packed(&'a PackedA, usize),
}

/// A right operand: anything that packs a block of itself into NR-column strips of bf16 pairs.
/// Convolutions pack straight from their input this way, never writing the im2col matrix.
pub trait Right: Sync {
    /// Packs k range `k0..k1` x columns `n0..n1` into `out` as `[strip][pair][NR]`: lane `j` of
    /// pair `p` in strip `t` holds `(B[k0 + 2p][n0 + NR t + j], B[k0 + 2p + 1][..])` as
    /// [`pair`] forms it, every lane written (zeros past `k1` and `n1`). `k0` is even.
    fn pack(&self, k0: usize, k1: usize, n0: usize, n1: usize, out: &mut Vec<u32>);
}

impl Right for Strided<'_> {
    fn pack(&self, k0: usize, k1: usize, n0: usize, n1: usize, out: &mut Vec<u32>) {
        // SAFETY: only reached through `gemm_with`, which checks `available()`.
        unsafe { pack_b(*self, k0, k1, n0, n1, out) }
    }
}

/// Packs k range `k0..k1` x columns `n0..n1` of `b` into NR-column strips: `[strip][pair][NR]`.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f,avx512bf16"))]
unsafe fn pack_b(b: Strided, k0: usize, k1: usize, n0: usize, n1: usize, out: &mut Vec<u32>) {
    let pairs = (k1 - k0).div_ceil(2);
    let strips = (n1 - n0).div_ceil(NR);
    overwrite(out, strips * pairs * NR);
    let gather = b.cs != 1 && gathers(b, k1, n1);
    for t in 0..strips {
        let strip = &mut out[t * pairs * NR..(t + 1) * pairs * NR];
        let cols = NR.min(n1 - n0 - t * NR);
        for p in 0..pairs {
            let k = k0 + 2 * p;
            let (dst, past) = strip[p * NR..(p + 1) * NR].split_at_mut(cols);
            past.fill(0);
            if b.cs == 1 {
                let lo = &b.data[k * b.rs + n0 + t * NR..][..cols];
                if k + 1 < k1 {
                    let hi = &b.data[(k + 1) * b.rs + n0 + t * NR..][..cols];
                    for ((d, &l), &h) in dst.iter_mut().zip(lo).zip(hi) {
                        *d = pair(l, h);
                    }
                } else {
                    for (d, &l) in dst.iter_mut().zip(lo) {
                        *d = pair(l, 0.0);
                    }
                }
            } else if cols == NR && gather {
                // A transposed operand (the weight gradient's im2col): 16 columns per gather.
                #[cfg(target_arch = "x86_64")]
                for v in 0..NV {
                    // SAFETY: `gathers` bounds every index the gathers read; `dst` holds NR lanes.
                    unsafe { gather_pairs(b, k, k + 1 < k1, n0 + t * NR + 16 * v, &mut dst[16 * v..16 * v + 16]) };
                }
            } else {
                for (j, d) in dst.iter_mut().enumerate() {
                    let col = n0 + t * NR + j;
                    let hi = if k + 1 < k1 { b.at(k + 1, col) } else { 0.0 };
                    *d = pair(b.at(k, col), hi);
                }
            }
        }
    }
}

/// Whether [`gather_pairs`] may read `b`'s rows below `k1` and columns below `n1`: offsets
/// within one image of 32-bit indices, and every element in the slice.
fn gathers(b: Strided, k1: usize, n1: usize) -> bool {
    cfg!(target_arch = "x86_64") && n1 * b.cs < i32::MAX as usize && k1 > 0 && n1 > 0 && (k1 - 1) * b.rs + (n1 - 1) * b.cs < b.data.len()
}

/// The pairs (k, k + 1) of 16 consecutive columns from `col`: two gathers, rounded as
/// [`round_bits`] rounds (integer arithmetic, so the result is the same bit for bit).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn gather_pairs(b: Strided, k: usize, has_hi: bool, col: usize, dst: &mut [u32]) {
    use std::arch::x86_64::*;
    assert!(dst.len() >= 16);
    let offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(b.cs as i32));
    let round = |u: __m512i| {
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(u), _mm512_set1_epi32(1));
        _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), odd))
    };
    // SAFETY: the caller checked (via `gathers`) that every offset below is inside `b.data`.
    unsafe {
        let base = b.data.as_ptr().add(k * b.rs + col * b.cs);
        let lo = round(_mm512_i32gather_epi32::<4>(offsets, base.cast()));
        let hi = if has_hi { round(_mm512_i32gather_epi32::<4>(offsets, base.add(b.rs).cast())) } else { _mm512_setzero_si512() };
        let packed = _mm512_or_si512(_mm512_and_si512(hi, _mm512_set1_epi32(0xFFFF_0000u32 as i32)), _mm512_srli_epi32::<16>(lo));
        _mm512_storeu_si512(dst.as_mut_ptr().cast(), packed);
    }
}

/// `c = a · b` (or `c += a · b` when `accumulate`), `a` m x k, `b` k x n, `c` row-major with row
/// stride `ldc`, on one thread. Panics if [`available`] is false.
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, n: usize, k: usize, a: Strided, b: Strided, c: &mut [f32], ldc: usize, accumulate: bool) {
    if m > 0 && n > 0 {
        a.check(m, k, "a");
        b.check(k, n, "b");
    }
    gemm_with(m, n, k, Left::Strided(a), &b, c, ldc, accumulate);
}

thread_local! {
    /// Each thread's packing buffers, kept between products (a fresh 400 KB panel per product
    /// costs page faults as well as the fill).
    static PANELS: std::cell::Cell<(Vec<u32>, Vec<u32>)> = const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// [`gemm`] with any [`Left`] and [`Right`] operand.
#[allow(clippy::too_many_arguments)]
pub fn gemm_with(m: usize, n: usize, k: usize, a: Left, b: &impl Right, c: &mut [f32], ldc: usize, accumulate: bool) {
    assert!(available(), "bf16 gemm: this CPU lacks AVX512-BF16");
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "bf16 gemm: c too small");
    if let Left::Packed(p, first) = a {
        assert!(first % MR == 0 && first + m <= p.rows() && p.k == k, "bf16 gemm: packed operand does not cover the product");
    }
    if k == 0 {
        if !accumulate {
            for row in c.chunks_mut(ldc).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    // Taken rather than borrowed, so that a nested product (none today) would just allocate.
    let (mut packed_a, mut packed_b) = PANELS.take();
    let strips = m.div_ceil(MR);
    for k0 in (0..k).step_by(KC) {
        let k1 = (k0 + KC).min(k);
        let pairs = (k1 - k0).div_ceil(2);
        let add = accumulate || k0 > 0;
        let a_block: &[u32] = match a {
            Left::Strided(a) => {
                // SAFETY: `available()` was checked above.
                unsafe { pack_a(a, m, k0, k1, &mut packed_a) };
                &packed_a
            }
            Left::Packed(p, first) => p.strips(k0, first / MR, strips),
        };
        for n0 in (0..n).step_by(NC) {
            let n1 = (n0 + NC).min(n);
            b.pack(k0, k1, n0, n1, &mut packed_b);
            assert_eq!(packed_b.len(), (n1 - n0).div_ceil(NR) * pairs * NR, "bf16 gemm: packed right operand has the wrong size");
            for t in 0..(n1 - n0).div_ceil(NR) {
                let b_strip = &packed_b[t * pairs * NR..(t + 1) * pairs * NR];
                let col = n0 + t * NR;
                let cols = NR.min(n1 - col);
                for s in 0..strips {
                    let a_strip = &a_block[s * pairs * MR..(s + 1) * pairs * MR];
                    let rows = MR.min(m - s * MR);
                    let c_tile = &mut c[s * MR * ldc + col..(s * MR + rows - 1) * ldc + col + cols];
                    // SAFETY: `available()` was checked above; the strips hold `pairs` pairs and
                    // `c_tile` spans `rows` rows of `cols` columns at stride `ldc`.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        micro_kernel(pairs, a_strip, b_strip, c_tile, ldc, rows, cols, add)
                    };
                }
            }
        }
    }
    PANELS.set((packed_a, packed_b));
}

/// `c[r][j] (+)= Σ_p a_strip[p][r] · b_strip[p][j]` over bf16 pairs, for the tile's `rows` x
/// `cols` (the rest of the 8 x 48 micro-tile is computed and dropped).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_kernel(pairs: usize, a_strip: &[u32], b_strip: &[u32], c: &mut [f32], ldc: usize, rows: usize, cols: usize, add: bool) {
    use std::arch::x86_64::*;
    assert!(a_strip.len() >= pairs * MR && b_strip.len() >= pairs * NR);
    assert!(rows >= 1 && rows <= MR && cols >= 1 && cols <= NR && c.len() >= (rows - 1) * ldc + cols);
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let (a, b) = (a_strip.as_ptr(), b_strip.as_ptr());
    for p in 0..pairs {
        // SAFETY: p < pairs and the asserts above bound every read.
        unsafe {
            let bv: [__m512bh; NV] =
                std::array::from_fn(|v| std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(b.add(p * NR + 16 * v).cast())));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*a.add(p * MR + r) as i32));
                for (v, lane) in row.iter_mut().enumerate() {
                    *lane = _mm512_dpbf16_ps(*lane, av, bv[v]);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate().take(rows) {
        for (v, lane) in row.iter().enumerate() {
            let width = cols.saturating_sub(16 * v).min(16);
            if width == 0 {
                break;
            }
            let mask: __mmask16 = if width == 16 { 0xFFFF } else { (1u16 << width) - 1 };
            // SAFETY: the masked lanes are columns 16v.. 16v + width of row r, inside `c` by the
            // assert above; masked-off lanes are neither read nor written.
            unsafe {
                let dst = c.as_mut_ptr().add(r * ldc + 16 * v);
                let sum = if add { _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), *lane) } else { *lane };
                _mm512_mask_storeu_ps(dst, mask, sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(round(1.0), 1.0);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(round(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(round(-2.5), -2.5);
        assert_eq!(round(0.0).to_bits(), 0);
    }

    /// `a · b` with operands rounded to bf16, summed in f64.
    fn reference(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| round(a[i * k + p]) as f64 * round(b[p * n + j]) as f64).sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn matches_the_rounded_reference_at_edge_sizes() {
        if !available() {
            eprintln!("skipped: no AVX512-BF16 on this CPU");
            return;
        }
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (8, 48, 2), (9, 49, 257), (17, 100, 513), (64, 800, 31)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 23.0).collect();
            let want = reference(m, n, k, &a, &b);
            let mut c = vec![f32::NAN; m * n];
            gemm(m, n, k, Strided { data: &a, rs: k, cs: 1 }, Strided { data: &b, rs: n, cs: 1 }, &mut c, n, false);
            let scale = want.iter().fold(1.0f32, |s, v| s.max(v.abs()));
            for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-5 * scale * (k as f32).sqrt(), "{m}x{n}x{k} [{i}]: {g} vs {w}");
            }
            // Accumulating adds to what is there; transposed (strided) operands give the same.
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let mut c2 = vec![1.0f32; m * n];
            gemm(m, n, k, Strided { data: &a, rs: k, cs: 1 }, Strided { data: &bt, rs: 1, cs: k }, &mut c2, n, true);
            for (g, w) in c2.iter().zip(&c) {
                assert!((g - (w + 1.0)).abs() <= 1e-5 * scale * (k as f32).sqrt(), "{m}x{n}x{k} accumulated: {g} vs {w} + 1");
            }
        }
    }
}
