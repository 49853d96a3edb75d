//! The AVX-512 micro-kernel: an `MR` x `NR` (8 x 48) tile of sums in 24 vector registers, one
//! body for both modes (`vdpbf16ps` on bf16 pairs, FMAs on `f32`), and the stores every kernel
//! shares.

#[cfg(target_arch = "x86_64")]
use super::layout::NV;
use super::layout::{MR, NR, Sum};
#[cfg(target_arch = "x86_64")]
use crate::simd::first_lanes;

/// The corner of `c` one kernel call writes: `rows` x `cols` at row stride `ldc`, overwritten
/// or added to.
pub(super) struct Tile<'a> {
    pub c: &'a mut [f32],
    pub ldc: usize,
    pub rows: usize,
    pub cols: usize,
    pub sum: Sum,
}

impl Tile<'_> {
    /// Panics unless `c` holds the corner and it fits a kernel of `max_rows` x `NR`.
    pub(super) fn check(&self, max_rows: usize) {
        let Tile { c, ldc, rows, cols, .. } = self;
        assert!((1..=max_rows).contains(rows) && (1..=NR).contains(cols) && c.len() >= (rows - 1) * ldc + cols);
    }
}

/// Stores the micro-tile's `rows` x `cols` corner into `tile`.
///
/// # Safety
/// The CPU has AVX-512F (`acc` holds its vectors); the bounds of `tile` are asserted.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_tile<const V: usize>(acc: &[[std::arch::x86_64::__m512; V]; MR], tile: Tile) {
    tile.check(MR);
    for (r, row) in acc.iter().enumerate().take(tile.rows) {
        // SAFETY: row r's first `cols` columns lie inside `c` by the check above; the caller
        // runs with AVX-512F.
        unsafe { store_row(row, tile.c.as_mut_ptr().add(r * tile.ldc), tile.cols, tile.sum) };
    }
}

/// Stores the first `cols` columns of one row of sums (`V` vectors of 16) at `dst`, adding to
/// what is there when `sum` says so: the micro-kernel's and the tile kernel's stores.
///
/// # Safety
/// `dst..dst + cols` is writable (masked-off lanes are neither read nor written); AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn store_row<const V: usize>(
    row: &[std::arch::x86_64::__m512; V],
    dst: *mut f32,
    cols: usize,
    sum: Sum,
) {
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
            let value = match sum {
                Sum::Accumulate => _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), *lane),
                Sum::Overwrite => *lane,
            };
            _mm512_mask_storeu_ps(dst, mask, value);
        }
    }
}

/// Defines a micro-kernel: `c[r][j] (+)= Σ_p a_strip[p][r] · b_strip[p][j]` over `lanes` lanes,
/// for the tile's `rows` x `cols`, in `V` vectors of 16 columns (the rest of the 8 x 16V tile is
/// computed and dropped).
/// The modes differ only in the CPU features, how a lane is loaded and broadcast, and the
/// multiply-add; one body keeps their loops, bounds and stores identical.
macro_rules! micro_kernel {
    (
        $(#[$doc:meta])* $name:ident,
        $features:literal,
        |$bits:ident| $load:expr,
        |$word:ident| $broadcast:expr,
        |$acc:ident, $av:ident, $bv:ident| $madd:expr
    ) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        ///
        /// # Safety
        /// The CPU has the kernel's features (callers check [`super::layout::Mode::available`]); the operands'
        /// bounds are asserted.
        pub(super) unsafe fn $name<const V: usize>(lanes: usize, a_strip: &[u32], b_strip: &[u32], tile: Tile) {
            #[allow(unused_imports)]
            use std::arch::x86_64::*;
            assert!(a_strip.len() >= lanes * MR && b_strip.len() >= lanes * NR);
            assert!(V <= NV && tile.cols <= 16 * V);
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
            unsafe { store_tile(&acc, tile) }
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
