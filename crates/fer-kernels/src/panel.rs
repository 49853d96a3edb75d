//! fer's own GEMM for the convolutions: packed panels and an 8 x 48 AVX-512 micro-kernel, in
//! two modes that share everything but the inner instruction.
//!
//! - [`Mode::Bf16`]: `f32` operands rounded to bfloat16, products summed in `f32`, on CPUs with
//!   AVX512-BF16 (`vdpbf16ps`: Zen 4 and later, Cooper Lake, Sapphire Rapids and later). One
//!   instruction does 16 lanes x 2 multiply-adds, twice an FMA's work, and each 32-bit panel lane
//!   holds two consecutive `k` values (low half `k`, high half `k + 1`), the pairing the
//!   instruction multiplies. Only the GEMMs see bf16, as PyTorch's autocast does.
//! - [`Mode::F32`]: plain `f32` FMAs (AVX-512F), one `k` value per lane.
//!
//! On CPUs with AMX (Sapphire Rapids and later), bf16 products run on its tiles instead
//! ([`tiles_available`]): `tdpbf16ps` multiplies a 16 x 32 bf16 tile by a 32 x 16 one into 16 x 16
//! `f32` sums, eight times the multiply-adds of `vdpbf16ps` per cycle. The right panels are
//! already in the tiles' pair layout (a 16-lane slice of a strip is a tile, rows `NR` lanes apart);
//! left operands are packed row-major for them (16-row strips, lanes padded to 16), and a strip's
//! last partial 16 lanes are copied into a zero-padded tile. The sums are in another order than
//! `vdpbf16ps`'s (and AMX flushes subnormal products to zero), so the results differ from the
//! AVX512-BF16 path by rounding, fixed from run to run.
//!
//! Why not the `gemm` crate for both: a GEMM that takes strided matrices needs the convolution's
//! im2col matrix written out in full (9 copies of the input for 3x3 kernels) and then packs it
//! again. Here the right operand is anything that packs itself ([`Right`]), so a convolution
//! packs its panels straight from the input (`conv_operands`), and a left operand reused by
//! every image group is packed once ([`PackedA`]).
//!
//! The summation order is fixed (k blocks in order, lanes in order), so results repeat bit for
//! bit.

use crate::bf16::pair;

/// Rows of the micro-tile (broadcast left-operand lanes).
const MR: usize = 8;
/// 16-lane vectors per micro-tile row.
const NV: usize = 3;
/// Columns of the micro-tile.
pub(crate) const NR: usize = 16 * NV;
/// Lanes per packed k block: 128 lanes keep a 48-column right strip (128 x 48 x 4 bytes = 24 KiB)
/// in Zen 4's 32 KiB L1 while the micro-kernel runs down the left strips.
pub(crate) const SLOTS: usize = 128;
/// Columns per packed right block (128 x 768 x 4 bytes = 384 KiB, within Zen 4's 1 MiB L2).
const NC: usize = 768;
/// Rows of an AMX tile, and of a left strip packed for the tiles.
const TM: usize = 16;
/// Lanes per tile step: 16 lanes of bf16 pairs make a tile row of 64 bytes.
const TK: usize = 16;

static TILES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether bf16 products run on AMX tiles where [`tiles_available`] (the default) or on
/// AVX512-BF16 everywhere. For measuring one against the other and testing both; a left operand
/// packed ahead ([`PackedA`]) keeps the kernel it was packed for.
pub fn set_tiles(enabled: bool) {
    TILES.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this CPU and OS run bf16 products on AMX tiles: CPUID reports AMX-TILE and AMX-BF16,
/// the CPU runs AVX512-BF16 (the packers and the rest of the bf16 path), and Linux granted this
/// process the tile state (asked for once, by `arch_prctl(ARCH_REQ_XCOMP_PERM)`).
pub fn tiles_available() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    {
        static GRANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *GRANTED.get_or_init(|| {
            use std::arch::x86_64::{__cpuid_count, __get_cpuid_max};
            #[allow(unused_unsafe)]
            // SAFETY: CPUID exists on every x86-64 CPU; leaf 7 is read only where it exists.
            let edx = unsafe { if __get_cpuid_max(0).0 >= 7 { __cpuid_count(7, 0).edx } else { 0 } };
            let (amx_bf16, amx_tile) = (edx & (1 << 22) != 0, edx & (1 << 24) != 0);
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: the request only changes which register state the kernel lets this process
            // use; a kernel without it answers an error.
            amx_bf16
                && amx_tile
                && crate::bf16::available()
                && unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) } == 0
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
    false
}

/// Whether products in `mode` packed now run on AMX tiles.
pub(crate) fn tiles_for(mode: Mode) -> bool {
    mode == Mode::Bf16 && TILES.load(std::sync::atomic::Ordering::Relaxed) && tiles_available()
}

/// Lanes a left operand packed for the tiles holds per row: `lanes` rounded up to a tile step.
fn tile_lanes(lanes: usize) -> usize {
    lanes.div_ceil(TK) * TK
}

/// Rows per strip of a packed left operand: [`TM`] for the tiles, `MR` for the micro-kernel.
fn strip_rows(tiles: bool) -> usize {
    if tiles { TM } else { MR }
}

/// Lanes per row of a packed left operand's k block of `lanes` lanes.
fn left_lanes(tiles: bool, lanes: usize) -> usize {
    if tiles { tile_lanes(lanes) } else { lanes }
}

/// What the products multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// bfloat16 operands, `f32` sums.
    Bf16,
    /// `f32` throughout.
    F32,
}

impl Mode {
    /// `k` values per 32-bit panel lane.
    pub fn per_lane(self) -> usize {
        match self {
            Mode::Bf16 => 2,
            Mode::F32 => 1,
        }
    }

    /// Whether this CPU runs the mode.
    pub fn available(self) -> bool {
        match self {
            Mode::Bf16 => crate::bf16::available(),
            Mode::F32 => avx512f(),
        }
    }

    /// Lanes that `k` range `k0..k1` packs into.
    pub fn lanes(self, k0: usize, k1: usize) -> usize {
        (k1 - k0).div_ceil(self.per_lane())
    }

    /// `k` values per packed block.
    fn kc(self) -> usize {
        SLOTS * self.per_lane()
    }

    /// The lane holding `lo` (`k`) and, in bf16, `hi` (`k + 1`).
    #[inline(always)]
    pub(crate) fn lane(self, lo: f32, hi: f32) -> u32 {
        match self {
            Mode::Bf16 => pair(lo, hi),
            Mode::F32 => lo.to_bits(),
        }
    }
}

fn avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `c = a · b` (or `c += a · b` when `accumulate`) with bf16 operands and `f32` sums, `a` m x k,
/// `b` k x n, `c` row-major with row stride `ldc`, on one thread. Panics if
/// [`crate::bf16::available`] is false.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16(m: usize, n: usize, k: usize, a: Strided, b: Strided, c: &mut [f32], ldc: usize, accumulate: bool) {
    if m > 0 && n > 0 {
        b.check(k, n, "b");
    }
    gemm_with(Mode::Bf16, m, n, k, Left::Strided(a), &b, c, ldc, accumulate);
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

    pub(crate) fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            assert!((rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len(), "panel gemm: {what} too small");
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
    #[allow(clippy::uninit_vec)]
    unsafe {
        v.set_len(len)
    };
}

/// Packs rows `0..m` x k range `k0..k1` of the matrix `at(row, k)` into MR-row strips:
/// `[strip][lane][MR]`, rows past `m` and the odd k past `k1` as zeros.
#[inline(always)]
fn pack_a_with(mode: Mode, m: usize, k0: usize, k1: usize, out: &mut [u32], at: impl Fn(usize, usize) -> f32) {
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
unsafe fn pack_a(mode: Mode, a: Strided, m: usize, k0: usize, k1: usize, out: &mut Vec<u32>) {
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
fn pack_tiles_with(m: usize, k0: usize, k1: usize, out: &mut [u32], at: impl Fn(usize, usize) -> f32) {
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
unsafe fn pack_tiles(a: Strided, m: usize, k0: usize, k1: usize, out: &mut Vec<u32>) {
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

/// The mask of a vector's first `n` lanes (all 16 from 16 on): the tail of a row, a run of tiles.
#[inline(always)]
pub(crate) fn first_lanes(n: usize) -> u16 {
    if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 }
}

/// The even and the odd elements of the 32 in `lo` then `hi`, each as one vector.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn even_odd(lo: std::arch::x86_64::__m512i, hi: std::arch::x86_64::__m512i) -> (std::arch::x86_64::__m512i, std::arch::x86_64::__m512i) {
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    (_mm512_permutex2var_epi32(lo, even, hi), _mm512_permutex2var_epi32(lo, odd, hi))
}

/// The bf16 pairs of sixteen lanes: `lo` (`k`, as `f32` bits) rounded into the low halves, `hi`
/// (`k + 1`) into the high halves, rounded as [`crate::bf16::round_bits`] rounds (integer
/// arithmetic, so [`crate::bf16::pair`]'s bits). Every bf16 packer goes through it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn pair_lanes(lo: std::arch::x86_64::__m512i, hi: std::arch::x86_64::__m512i) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let round = |u: __m512i| {
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(u), _mm512_set1_epi32(1));
        _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), odd)), _mm512_set1_epi32(0xFFFF_0000u32 as i32))
    };
    _mm512_or_si512(round(hi), _mm512_srli_epi32::<16>(round(lo)))
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
                    let column = _mm512_i32gather_epi32::<4>(_mm512_add_epi32(turn, _mm512_set1_epi32(2 * q as i32)), block.as_ptr().cast());
                    let keep: __mmask16 = if p + 1 < lanes { 0xFFFF } else { 0x00FF };
                    _mm512_mask_storeu_epi32(dst.add(p * MR).cast(), keep, column);
                }
            }
        }
    }
}

/// A left operand packed once for every k block, for products that reuse it: a convolution's
/// weights are the left operand of every image group's GEMM, and used to be packed again for
/// each (6% of a training step).
pub struct PackedA {
    mode: Mode,
    m: usize,
    k: usize,
    /// Packed for the AMX tiles ([`pack_tiles_with`]) rather than in MR-row strips.
    tiles: bool,
    data: Vec<u32>,
}

impl PackedA {
    /// Packs the `m` x `k` matrix `at(row, k)`, k blocks in parallel.
    pub fn new(mode: Mode, m: usize, k: usize, at: impl Fn(usize, usize) -> f32 + Sync) -> Self {
        use rayon::prelude::*;
        let tiles = tiles_for(mode);
        let block_len = |k0: usize, k1: usize| m.div_ceil(strip_rows(tiles)) * strip_rows(tiles) * left_lanes(tiles, mode.lanes(k0, k1));
        let mut blocks = Vec::new();
        for k0 in (0..k).step_by(mode.kc()) {
            blocks.push((k0, (k0 + mode.kc()).min(k)));
        }
        let mut data = Vec::new();
        overwrite(&mut data, blocks.iter().map(|&(k0, k1)| block_len(k0, k1)).sum());
        let mut parts = Vec::new();
        let mut rest = &mut data[..];
        for (k0, k1) in blocks {
            let (block, tail) = rest.split_at_mut(block_len(k0, k1));
            parts.push((k0, k1, block));
            rest = tail;
        }
        parts.into_par_iter().for_each(
            |(k0, k1, block)| {
                if tiles { pack_tiles_with(m, k0, k1, block, &at) } else { pack_a_with(mode, m, k0, k1, block, &at) }
            },
        );
        PackedA { mode, m, k, tiles, data }
    }

    /// Of a strided matrix.
    pub fn from_strided(mode: Mode, a: Strided, m: usize, k: usize) -> Self {
        a.check(m, k, "a");
        PackedA::new(mode, m, k, |i, j| a.at(i, j))
    }

    pub fn rows(&self) -> usize {
        self.m
    }

    pub fn depth(&self) -> usize {
        self.k
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Strips `first..first + count` of the k block starting at `k0`.
    fn strips(&self, k0: usize, first: usize, count: usize) -> &[u32] {
        let rows = strip_rows(self.tiles);
        // Every block before `k0` is whole: SLOTS lanes per row, a multiple of a tile step.
        let offset = self.m.div_ceil(rows) * rows * (k0 / self.mode.per_lane());
        let lanes = left_lanes(self.tiles, self.mode.lanes(k0, (k0 + self.mode.kc()).min(self.k)));
        &self.data[offset + first * lanes * rows..offset + (first + count) * lanes * rows]
    }
}

/// The left operand of a product.
#[derive(Clone, Copy)]
pub enum Left<'a> {
    /// Packed block by block as the product goes.
    Strided(Strided<'a>),
    /// Rows `first..` of an operand packed once; `first` a multiple of 16 (the strips).
    Packed(&'a PackedA, usize),
}

/// A right operand: anything that packs a block of itself into NR-column strips of lanes.
/// Convolutions pack straight from their input this way, never writing the im2col matrix.
pub trait Right: Sync {
    /// Packs k range `k0..k1` x columns `n0..n1` into `out` as `[strip][lane][NR]`: lane `j` of
    /// entry `p` in strip `t` holds `mode.lane(B[k0 + per p][n0 + NR t + j], B[.. + 1][..])`,
    /// every lane written (zeros past `k1` and `n1`). `k0` is a multiple of the lanes' `k` count.
    fn pack(&self, mode: Mode, k0: usize, k1: usize, n0: usize, n1: usize, out: &mut Vec<u32>);

    /// The same block where the operand already holds it packed, to be read in place (no copy);
    /// `None` (the default) has it packed by [`Right::pack`].
    fn packed(&self, _mode: Mode, _k0: usize, _k1: usize, _n0: usize, _n1: usize) -> Option<&[u32]> {
        None
    }
}

impl Right for Strided<'_> {
    fn pack(&self, mode: Mode, k0: usize, k1: usize, n0: usize, n1: usize, out: &mut Vec<u32>) {
        assert!(mode.available(), "panel gemm: {mode:?} needs a CPU feature this one lacks");
        // SAFETY: the CPU has AVX-512F (every mode needs it, checked just above).
        unsafe { pack_b(mode, *self, k0, k1, n0, n1, out) }
    }
}

/// Packs k range `k0..k1` x columns `n0..n1` of `b` into NR-column strips: `[strip][lane][NR]`.
///
/// # Safety
/// The CPU has AVX-512F (every panel mode needs it). Every read of `b` is bounds-checked or, for
/// the gathers, checked first by [`gathers`].
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn pack_b(mode: Mode, b: Strided, k0: usize, k1: usize, n0: usize, n1: usize, out: &mut Vec<u32>) {
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
    cfg!(target_arch = "x86_64") && n1 * b.cs < i32::MAX as usize && k1 > 0 && n1 > 0 && (k1 - 1) * b.rs + (n1 - 1) * b.cs < b.data.len()
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
    let offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(b.cs as i32));
    // SAFETY: the caller checked (via `gathers`) that every offset below is inside `b.data`.
    unsafe {
        let base = b.data.as_ptr().add(k * b.rs + col * b.cs);
        let lo = _mm512_i32gather_epi32::<4>(offsets, base.cast());
        let hi = if has_hi { _mm512_i32gather_epi32::<4>(offsets, base.add(b.rs).cast()) } else { _mm512_setzero_si512() };
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
    let offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(b.cs as i32));
    // SAFETY: the caller checked (via `gathers`) that every offset below is inside `b.data`.
    unsafe {
        let base = b.data.as_ptr().add(k * b.rs + col * b.cs);
        _mm512_storeu_si512(dst.as_mut_ptr().cast(), _mm512_i32gather_epi32::<4>(offsets, base.cast()));
    }
}

thread_local! {
    /// Each thread's packing buffers, kept between products (a fresh 400 KB panel per product
    /// costs page faults as well as the fill).
    static PANELS: std::cell::Cell<(Vec<u32>, Vec<u32>)> = const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// `c = a · b` (or `c += a · b` when `accumulate`), `a` m x k, `b` k x n, `c` row-major with row
/// stride `ldc`, on one thread. Panics if the mode is not available on this CPU.
#[allow(clippy::too_many_arguments)]
pub fn gemm_with(mode: Mode, m: usize, n: usize, k: usize, a: Left, b: &impl Right, c: &mut [f32], ldc: usize, accumulate: bool) {
    assert!(mode.available(), "panel gemm: {mode:?} needs a CPU feature this one lacks");
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "panel gemm: c too small");
    // The AMX tiles where the left operand is (or will be) packed for them.
    let tiles = match a {
        Left::Packed(p, _) => p.tiles,
        Left::Strided(_) => tiles_for(mode),
    };
    let strip_rows = strip_rows(tiles);
    match a {
        Left::Packed(p, first) => assert!(
            p.mode == mode && first % strip_rows == 0 && first + m <= p.rows() && p.k == k,
            "panel gemm: packed operand does not cover the product"
        ),
        Left::Strided(a) => a.check(m, k, "a"),
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
    #[cfg(target_arch = "x86_64")]
    if tiles {
        // SAFETY: `tiles` implies AMX and the granted tile state (`tiles_available`).
        unsafe { configure_tiles() };
    }
    // A strip's last partial tile step of lanes, zero-padded (AMX reads whole tiles).
    let mut tail = [0u32; TK * NR];
    let strips = m.div_ceil(strip_rows);
    for k0 in (0..k).step_by(mode.kc()) {
        let k1 = (k0 + mode.kc()).min(k);
        let lanes = mode.lanes(k0, k1);
        let a_lanes = left_lanes(tiles, lanes);
        let add = accumulate || k0 > 0;
        let a_block: &[u32] = match a {
            Left::Strided(a) => {
                // SAFETY: the mode is available (checked above), so the CPU has AVX-512F.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    if tiles { pack_tiles(a, m, k0, k1, &mut packed_a) } else { pack_a(mode, a, m, k0, k1, &mut packed_a) }
                };
                &packed_a
            }
            Left::Packed(p, first) => p.strips(k0, first / strip_rows, strips),
        };
        for n0 in (0..n).step_by(NC) {
            let n1 = (n0 + NC).min(n);
            let b_block: &[u32] = match b.packed(mode, k0, k1, n0, n1) {
                Some(block) => block,
                None => {
                    b.pack(mode, k0, k1, n0, n1, &mut packed_b);
                    &packed_b
                }
            };
            assert_eq!(b_block.len(), (n1 - n0).div_ceil(NR) * lanes * NR, "panel gemm: packed right operand has the wrong size");
            for t in 0..(n1 - n0).div_ceil(NR) {
                let b_strip = &b_block[t * lanes * NR..(t + 1) * lanes * NR];
                let col = n0 + t * NR;
                let cols = NR.min(n1 - col);
                if tiles && !lanes.is_multiple_of(TK) {
                    let whole = lanes - lanes % TK;
                    tail[..(lanes - whole) * NR].copy_from_slice(&b_strip[whole * NR..]);
                    tail[(lanes - whole) * NR..].fill(0);
                }
                for s in 0..strips {
                    let a_strip = &a_block[s * a_lanes * strip_rows..(s + 1) * a_lanes * strip_rows];
                    let rows = strip_rows.min(m - s * strip_rows);
                    let c_tile = &mut c[s * strip_rows * ldc + col..(s * strip_rows + rows - 1) * ldc + col + cols];
                    // SAFETY: the mode is available (checked above), and AMX where `tiles`; the
                    // strips hold `lanes` lanes (the left one `a_lanes` per row for the tiles) and
                    // `c_tile` spans `rows` rows of `cols` columns at stride `ldc`.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        match mode {
                            Mode::Bf16 if tiles => tile_kernel(lanes, a_strip, b_strip, &tail, c_tile, ldc, rows, cols, add),
                            // A strip's last columns: only the vectors that hold some (an 8x16
                            // tile computes a third of an 8x48 one).
                            Mode::Bf16 if cols <= 16 => micro_kernel_bf16::<1>(lanes, a_strip, b_strip, c_tile, ldc, rows, cols, add),
                            Mode::Bf16 if cols <= 32 => micro_kernel_bf16::<2>(lanes, a_strip, b_strip, c_tile, ldc, rows, cols, add),
                            Mode::Bf16 => micro_kernel_bf16::<NV>(lanes, a_strip, b_strip, c_tile, ldc, rows, cols, add),
                            Mode::F32 if cols <= 16 => micro_kernel_f32::<1>(lanes, a_strip, b_strip, c_tile, ldc, rows, cols, add),
                            Mode::F32 if cols <= 32 => micro_kernel_f32::<2>(lanes, a_strip, b_strip, c_tile, ldc, rows, cols, add),
                            Mode::F32 => micro_kernel_f32::<NV>(lanes, a_strip, b_strip, c_tile, ldc, rows, cols, add),
                        }
                    };
                }
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if tiles {
        // SAFETY: the tiles were configured above; this only marks them unused.
        unsafe { std::arch::asm!("tilerelease", options(nostack, nomem)) };
    }
    PANELS.set((packed_a, packed_b));
}

/// The tile configuration every product uses: palette 1, tiles 0-6 of 16 rows x 64 bytes (three
/// sums of 16 x 16 `f32`, one left tile of 16 rows x 32 bf16, three right tiles of 16 pair rows
/// x 16 columns).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

static TILE_CONFIG: TileConfig = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 7 {
        c[16 + 2 * t] = 64;
        c[48 + t] = TM as u8;
        t += 1;
    }
    TileConfig(c)
};

/// Loads [`TILE_CONFIG`] on this thread.
///
/// # Safety
/// The CPU has AMX and Linux granted the tile state ([`tiles_available`]).
#[cfg(target_arch = "x86_64")]
unsafe fn configure_tiles() {
    // SAFETY: see above; the configuration is 64 valid bytes.
    unsafe { std::arch::asm!("ldtilecfg [{}]", in(reg) &TILE_CONFIG.0, options(nostack, readonly)) };
}

/// `c[r][j] (+)= Σ_p a_strip[r][p] · b_strip[p][j]` on the AMX tiles (configured by
/// [`configure_tiles`]) over `lanes` lanes: `a_strip` 16 rows of [`tile_lanes`] lanes,
/// `b_strip` `lanes` rows of NR lanes, `tail` its last partial tile step zero-padded to 16 rows.
/// Three 16 x 16 sums cover the strip's 48 columns; the `rows` x `cols` corner is stored.
///
/// # Safety
/// The CPU has AMX and AVX-512F, Linux granted the tile state, and [`configure_tiles`] ran on
/// this thread: the tile instructions use the configured shapes. The operands' bounds are asserted.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_kernel(lanes: usize, a_strip: &[u32], b_strip: &[u32], tail: &[u32], c: &mut [f32], ldc: usize, rows: usize, cols: usize, add: bool) {
    use std::arch::asm;
    use std::arch::x86_64::*;
    let width = tile_lanes(lanes);
    assert!(a_strip.len() >= TM * width && b_strip.len() >= lanes * NR && tail.len() >= TK * NR);
    assert!((1..=TM).contains(&rows) && (1..=NR).contains(&cols) && c.len() >= (rows - 1) * ldc + cols);
    let whole = lanes - lanes % TK;
    let mut sums = [0.0f32; TM * NR];
    // SAFETY: every tile load reads 16 rows of 64 bytes inside the asserted operands (left: 16
    // lanes from p0 < width of each row; right: rows p0..p0 + 16 < lanes, or the tail); the stores
    // write `sums`. Tiles 0-6 are configured; the compiler never uses tile registers itself.
    unsafe {
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", options(nostack, nomem));
        for p0 in (0..lanes).step_by(TK) {
            let b = if p0 < whole { b_strip.as_ptr().add(p0 * NR) } else { tail.as_ptr() };
            asm!(
                "tileloadd tmm3, [{a} + {sa} * 1]",
                "tileloadd tmm4, [{b0} + {sb} * 1]",
                "tileloadd tmm5, [{b1} + {sb} * 1]",
                "tileloadd tmm6, [{b2} + {sb} * 1]",
                "tdpbf16ps tmm0, tmm3, tmm4",
                "tdpbf16ps tmm1, tmm3, tmm5",
                "tdpbf16ps tmm2, tmm3, tmm6",
                a = in(reg) a_strip.as_ptr().add(p0),
                sa = in(reg) width * 4,
                b0 = in(reg) b,
                b1 = in(reg) b.add(16),
                b2 = in(reg) b.add(32),
                sb = in(reg) NR * 4,
                options(nostack, readonly),
            );
        }
        let out = sums.as_mut_ptr();
        asm!(
            "tilestored [{o0} + {s} * 1], tmm0",
            "tilestored [{o1} + {s} * 1], tmm1",
            "tilestored [{o2} + {s} * 1], tmm2",
            o0 = in(reg) out,
            o1 = in(reg) out.add(16),
            o2 = in(reg) out.add(32),
            s = in(reg) NR * 4,
            options(nostack),
        );
        for r in 0..rows {
            let row: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(sums.as_ptr().add(r * NR + 16 * v)));
            store_row(&row, c.as_mut_ptr().add(r * ldc), cols, add);
        }
    }
}

/// Stores the micro-tile's `rows` x `cols` corner into `c` (adding to it when `add`).
///
/// # Safety
/// The CPU has AVX-512F (`acc` holds its vectors); the bounds of `c` are asserted.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_tile<const V: usize>(acc: &[[std::arch::x86_64::__m512; V]; MR], c: &mut [f32], ldc: usize, rows: usize, cols: usize, add: bool) {
    assert!((1..=MR).contains(&rows) && (1..=NR).contains(&cols) && c.len() >= (rows - 1) * ldc + cols);
    for (r, row) in acc.iter().enumerate().take(rows) {
        // SAFETY: row r's first `cols` columns lie inside `c` by the assert above; the caller
        // runs with AVX-512F.
        unsafe { store_row(row, c.as_mut_ptr().add(r * ldc), cols, add) };
    }
}

/// Stores the first `cols` columns of one row of sums (`V` vectors of 16) at `dst`, adding to
/// what is there when `add`: the micro-kernel's and the tile kernel's stores.
///
/// # Safety
/// `dst..dst + cols` is writable (masked-off lanes are neither read nor written); AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_row<const V: usize>(row: &[std::arch::x86_64::__m512; V], dst: *mut f32, cols: usize, add: bool) {
    use std::arch::x86_64::*;
    for (v, lane) in row.iter().enumerate() {
        let width = cols.saturating_sub(16 * v).min(16);
        if width == 0 {
            break;
        }
        let mask: __mmask16 = first_lanes(width);
        // SAFETY: see above.
        unsafe {
            let dst = dst.add(16 * v);
            let sum = if add { _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), *lane) } else { *lane };
            _mm512_mask_storeu_ps(dst, mask, sum);
        }
    }
}

/// Defines a micro-kernel: `c[r][j] (+)= Σ_p a_strip[p][r] · b_strip[p][j]` over `lanes` lanes,
/// for the tile's `rows` x `cols`, in `V` vectors of 16 columns (the rest of the 8 x 16V tile is
/// computed and dropped).
/// The modes differ only in the CPU features, how a lane is loaded and broadcast, and the
/// multiply-add; one body keeps their loops, bounds and stores identical.
macro_rules! micro_kernel {
    ($(#[$doc:meta])* $name:ident, $features:literal, |$bits:ident| $load:expr, |$word:ident| $broadcast:expr, |$acc:ident, $av:ident, $bv:ident| $madd:expr) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        ///
        /// # Safety
        /// The CPU has the kernel's features (callers check [`Mode::available`]); the operands'
        /// bounds are asserted.
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name<const V: usize>(lanes: usize, a_strip: &[u32], b_strip: &[u32], c: &mut [f32], ldc: usize, rows: usize, cols: usize, add: bool) {
            #[allow(unused_imports)]
            use std::arch::x86_64::*;
            assert!(a_strip.len() >= lanes * MR && b_strip.len() >= lanes * NR);
            assert!(V <= NV && cols <= 16 * V);
            let mut acc = [[_mm512_setzero_ps(); V]; MR];
            let (a, b) = (a_strip.as_ptr(), b_strip.as_ptr());
            for p in 0..lanes {
                // SAFETY: p < lanes and the assert above bounds every read.
                unsafe {
                    let bv = std::array::from_fn::<_, V, _>(|v| {
                        let $bits = _mm512_loadu_si512(b.add(p * NR + 16 * v).cast());
                        $load
                    });
                    for (r, row) in acc.iter_mut().enumerate() {
                        let $word = *a.add(p * MR + r);
                        let $av = $broadcast;
                        for (v, lane) in row.iter_mut().enumerate() {
                            let ($acc, $bv) = (*lane, bv[v]);
                            *lane = $madd;
                        }
                    }
                }
            }
            // SAFETY: this function runs with AVX-512F; `store_tile` checks the bounds.
            unsafe { store_tile(&acc, c, ldc, rows, cols, add) }
        }
    };
}

micro_kernel!(
    /// bf16 pairs: `vdpbf16ps`, two multiply-adds per lane.
    micro_kernel_bf16,
    "avx512f,avx512bf16",
    |bits| std::mem::transmute::<__m512i, __m512bh>(bits),
    |word| std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(word as i32)),
    |acc, av, bv| _mm512_dpbf16_ps(acc, av, bv)
);

micro_kernel!(
    /// `f32` lanes: FMAs.
    micro_kernel_f32,
    "avx512f",
    |bits| _mm512_castsi512_ps(bits),
    |word| _mm512_set1_ps(f32::from_bits(word)),
    |acc, av, bv| _mm512_fmadd_ps(av, bv, acc)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bf16::round;

    /// `a · b` with operands as `mode` multiplies them, summed in f64.
    fn reference(mode: Mode, m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let r = |v: f32| if mode == Mode::Bf16 { round(v) } else { v };
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| r(a[i * k + p]) as f64 * r(b[p * n + j]) as f64).sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn row_packing_is_the_scalar_packing_bit_for_bit() {
        // (Both packings of left operands: in MR-row strips, and row-major for the AMX tiles.)
        for mode in [Mode::Bf16, Mode::F32] {
            if !mode.available() {
                continue;
            }
            for &(m, k, k0, k1) in &[(1, 1, 0, 1), (8, 33, 0, 33), (13, 300, 256, 300), (9, 97, 0, 97), (3, 64, 32, 63)] {
                // Values that round both ways, ties included, and a row stride wider than k.
                let a: Vec<f32> = (0..m * (k + 5)).map(|i| ((i * 7919 % 2003) as f32 - 1001.0) * (1.0 + 1.0 / 256.0) / 97.0).collect();
                let strided = Strided { data: &a, rs: k + 5, cs: 1 };
                let (mut fast, mut scalar) = (Vec::new(), Vec::new());
                // SAFETY: the mode is available (checked above), so the CPU has AVX-512F.
                unsafe { pack_a(mode, strided, m, k0, k1, &mut fast) };
                overwrite(&mut scalar, m.div_ceil(MR) * mode.lanes(k0, k1) * MR);
                pack_a_with(mode, m, k0, k1, &mut scalar, |i, j| strided.at(i, j));
                assert_eq!(fast, scalar, "{mode:?} m={m} k={k0}..{k1}");
                if mode == Mode::Bf16 {
                    // The packing for the AMX tiles (plain AVX-512F code, tested on any such CPU).
                    // SAFETY: the mode is available, so the CPU has AVX-512F.
                    unsafe { pack_tiles(strided, m, k0, k1, &mut fast) };
                    overwrite(&mut scalar, m.div_ceil(TM) * TM * tile_lanes(mode.lanes(k0, k1)));
                    pack_tiles_with(m, k0, k1, &mut scalar, |i, j| strided.at(i, j));
                    assert_eq!(fast, scalar, "tiles m={m} k={k0}..{k1}");
                }
            }
        }
    }

    /// The AMX tile kernel (where the CPU has it) against the reference and the AVX512-BF16
    /// micro-kernel: strips of 16 rows cut short, lanes that end inside a tile step (the zero-padded
    /// tail) or on one, several k blocks and column blocks, a packed left operand read from a later
    /// strip, and accumulation.
    #[test]
    fn amx_tiles_match_the_reference_and_the_vector_kernel() {
        if !tiles_available() {
            eprintln!("skipped: this CPU (or kernel) gives no AMX tiles");
            return;
        }
        for &(m, n, k) in &[(1, 1, 1), (16, 48, 32), (17, 49, 33), (40, 800, 513), (33, 100, 64), (7, 20, 300)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 23.0).collect();
            let want = reference(Mode::Bf16, m, n, k, &a, &b);
            let scale = want.iter().fold(1.0f32, |s, v| s.max(v.abs()));
            let tol = 1e-5 * scale * (k as f32).sqrt();
            let (sa, sb) = (Strided { data: &a, rs: k, cs: 1 }, Strided { data: &b, rs: n, cs: 1 });
            let product = |left: Left, c: &mut [f32], accumulate: bool| gemm_with(Mode::Bf16, m, n, k, left, &sb, c, n, accumulate);
            // Packed for the tiles (the default where they exist), and for the vector kernel.
            let packed = PackedA::from_strided(Mode::Bf16, sa, m, k);
            set_tiles(false);
            let vector_packed = PackedA::from_strided(Mode::Bf16, sa, m, k);
            let mut vector = vec![f32::NAN; m * n];
            product(Left::Strided(sa), &mut vector, false);
            set_tiles(true);
            assert!(packed.tiles && !vector_packed.tiles, "the packing did not follow the setting");
            let mut tiles = vec![f32::NAN; m * n];
            product(Left::Strided(sa), &mut tiles, false);
            let mut from_packed = vec![1.0f32; m * n];
            product(Left::Packed(&packed, 0), &mut from_packed, true);
            for (i, ((t, v), w)) in tiles.iter().zip(&vector).zip(&want).enumerate() {
                assert!((t - w).abs() <= tol && (v - w).abs() <= tol, "{m}x{n}x{k} [{i}]: tiles {t}, vector {v}, reference {w}");
                assert!((from_packed[i] - (t + 1.0)).abs() <= tol, "{m}x{n}x{k} [{i}] packed, accumulated: {} vs {t} + 1", from_packed[i]);
            }
            if m > TM {
                // Rows from the second strip on, from the operand packed once.
                let mut rest = vec![f32::NAN; (m - TM) * n];
                gemm_with(Mode::Bf16, m - TM, n, k, Left::Packed(&packed, TM), &sb, &mut rest, n, false);
                assert_eq!(rest, tiles[TM * n..], "{m}x{n}x{k}: rows from a later strip");
            }
        }
    }

    #[test]
    fn both_modes_match_the_reference_at_edge_sizes() {
        for mode in [Mode::Bf16, Mode::F32] {
            if !mode.available() {
                eprintln!("skipped {mode:?}: this CPU lacks it");
                continue;
            }
            for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (8, 48, 2), (9, 49, 257), (17, 100, 513), (64, 800, 31)] {
                let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
                let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 23.0).collect();
                let want = reference(mode, m, n, k, &a, &b);
                let sa = Strided { data: &a, rs: k, cs: 1 };
                let mut c = vec![f32::NAN; m * n];
                gemm_with(mode, m, n, k, Left::Strided(sa), &Strided { data: &b, rs: n, cs: 1 }, &mut c, n, false);
                let scale = want.iter().fold(1.0f32, |s, v| s.max(v.abs()));
                for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() <= 1e-5 * scale * (k as f32).sqrt(), "{mode:?} {m}x{n}x{k} [{i}]: {g} vs {w}");
                }
                // Accumulating adds to what is there; transposed (strided) operands and a left
                // operand packed ahead give the same.
                let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                let packed = PackedA::from_strided(mode, sa, m, k);
                let mut c2 = vec![1.0f32; m * n];
                gemm_with(mode, m, n, k, Left::Packed(&packed, 0), &Strided { data: &bt, rs: 1, cs: k }, &mut c2, n, true);
                for (g, w) in c2.iter().zip(&c) {
                    assert!((g - (w + 1.0)).abs() <= 1e-5 * scale * (k as f32).sqrt(), "{mode:?} {m}x{n}x{k} accumulated: {g} vs {w} + 1");
                }
            }
        }
    }
}
