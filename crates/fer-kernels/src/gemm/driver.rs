//! The loop nest of fer's GEMM on one thread, outermost first:
//!
//! 1. **k blocks** of `SLOTS` lanes (`Mode::kc` values of `k`): the left operand's block is
//!    packed (or read from a [`super::operands::PackedA`]);
//! 2. **column blocks** of `NC` columns: the right operand's block is packed (or read in place);
//! 3. **right strips** of `NR` columns, each kept in L1;
//! 4. **left strips** of `MR` rows (`TM` on the AMX tiles): one kernel call per strip pair.
//!
//! Every k block after the first adds to `c`, so the summation order is fixed and results repeat
//! bit for bit.

#[cfg(target_arch = "x86_64")]
use super::amx::{configure_tiles, tile_kernel};
#[cfg(target_arch = "x86_64")]
use super::avx512::{Tile, micro_kernel_bf16, micro_kernel_f32};
use super::layout::{Dims, Mode, NC, NR, NV, Out, Strided, Sum, TK, left_lanes, strip_rows, tiles_for};
use super::operands::{Left, Right};
use super::pack::{pack_a, pack_tiles};

thread_local! {
    /// Each thread's packing buffers, kept between products (a fresh 400 KB panel per product
    /// costs page faults as well as the fill).
    static PANELS: std::cell::Cell<(Vec<u32>, Vec<u32>)> = const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// `c = a · b` with bf16 operands and `f32` sums on one thread, for plain strided matrices.
/// Panics if [`crate::cpu::avx512_bf16`] is false.
pub fn gemm_bf16(dims: Dims, a: Strided, b: Strided, out: Out) {
    if dims.m > 0 && dims.n > 0 {
        b.check(dims.k, dims.n, "b");
    }
    gemm_with(Mode::Bf16, dims, Left::Strided(a), &b, out);
}

/// `c = a · b` (or `c += a · b`), on one thread. Panics if the mode is not available on this CPU
/// or an operand does not cover the product.
pub fn gemm_with(mode: Mode, dims: Dims, a: Left, b: &impl Right, out: Out) {
    assert!(mode.available(), "panel gemm: {mode:?} needs a CPU feature this one lacks");
    let Dims { m, n, k } = dims;
    if m == 0 || n == 0 {
        return;
    }
    let Out { c, ldc, sum } = out;
    assert!(c.len() >= (m - 1) * ldc + n, "panel gemm: c too small");
    // The AMX tiles where the left operand is (or will be) packed for them.
    let tiles = match a {
        Left::Packed(p, _) => p.tiles,
        Left::Strided(_) => tiles_for(mode),
    };
    match a {
        Left::Packed(p, first) => assert!(
            p.mode == mode && first % strip_rows(tiles) == 0 && first + m <= p.rows() && p.k == k,
            "panel gemm: packed operand does not cover the product"
        ),
        Left::Strided(a) => a.check(m, k, "a"),
    }
    if k == 0 {
        if sum == Sum::Overwrite {
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
        // SAFETY: `tiles` implies AMX and the granted tile state (`cpu::amx_tiles`).
        unsafe { configure_tiles() };
    }
    let product = Product { mode, dims, tiles, ldc };
    // Loop 1: k blocks.
    for k0 in (0..k).step_by(mode.kc()) {
        let k1 = (k0 + mode.kc()).min(k);
        let a_block: &[u32] = match a {
            Left::Strided(a) => {
                // SAFETY: the mode is available (checked above), so the CPU has AVX-512F.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    if tiles {
                        pack_tiles(a, m, k0, k1, &mut packed_a)
                    } else {
                        pack_a(mode, a, m, k0, k1, &mut packed_a)
                    }
                };
                &packed_a
            }
            Left::Packed(p, first) => p.strips(k0, first / strip_rows(tiles), m.div_ceil(strip_rows(tiles))),
        };
        let sum = if k0 > 0 { Sum::Accumulate } else { sum };
        // Loop 2: column blocks.
        for n0 in (0..n).step_by(NC) {
            let n1 = (n0 + NC).min(n);
            let b_block: &[u32] = match b.packed(mode, k0, k1, n0, n1) {
                Some(block) => block,
                None => {
                    b.pack(mode, k0, k1, n0, n1, &mut packed_b);
                    &packed_b
                }
            };
            product.block(Block { k0, k1, n0, n1, a: a_block, b: b_block }, c, sum);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if tiles {
        // SAFETY: the tiles were configured above; this only marks them unused.
        unsafe { std::arch::asm!("tilerelease", options(nostack, nomem)) };
    }
    PANELS.set((packed_a, packed_b));
}

/// What every block of one product shares.
struct Product {
    mode: Mode,
    dims: Dims,
    /// On the AMX tiles (left strips of `TM` rows packed row-major).
    tiles: bool,
    ldc: usize,
}

/// One k block x column block: the packed left strips and right strips.
struct Block<'a> {
    k0: usize,
    k1: usize,
    n0: usize,
    n1: usize,
    a: &'a [u32],
    b: &'a [u32],
}

impl Product {
    /// Loops 3 and 4: right strips, then left strips, one kernel call each.
    fn block(&self, block: Block, c: &mut [f32], sum: Sum) {
        let Product { mode, dims, tiles, ldc } = *self;
        let Block { k0, k1, n0, n1, a, b } = block;
        let lanes = mode.lanes(k0, k1);
        let (strip_rows, a_lanes) = (strip_rows(tiles), left_lanes(tiles, lanes));
        assert_eq!(b.len(), (n1 - n0).div_ceil(NR) * lanes * NR, "panel gemm: packed right operand has the wrong size");
        // A strip's last partial tile step of lanes, zero-padded (AMX reads whole tiles).
        let mut tail = [0u32; TK * NR];
        // Loop 3: right strips.
        for t in 0..(n1 - n0).div_ceil(NR) {
            let b_strip = &b[t * lanes * NR..(t + 1) * lanes * NR];
            let col = n0 + t * NR;
            let cols = NR.min(n1 - col);
            if tiles && !lanes.is_multiple_of(TK) {
                let whole = lanes - lanes % TK;
                tail[..(lanes - whole) * NR].copy_from_slice(&b_strip[whole * NR..]);
                tail[(lanes - whole) * NR..].fill(0);
            }
            // Loop 4: left strips.
            for s in 0..dims.m.div_ceil(strip_rows) {
                let a_strip = &a[s * a_lanes * strip_rows..(s + 1) * a_lanes * strip_rows];
                let rows = strip_rows.min(dims.m - s * strip_rows);
                let c_tile = &mut c[s * strip_rows * ldc + col..(s * strip_rows + rows - 1) * ldc + col + cols];
                #[cfg(target_arch = "x86_64")]
                {
                    let tile = Tile { c: c_tile, ldc, rows, cols, sum };
                    // SAFETY: the mode is available (checked by `gemm_with`), and AMX where
                    // `tiles`; the strips hold `lanes` lanes (the left one `a_lanes` per row for
                    // the tiles) and the tile spans `rows` rows of `cols` columns at stride `ldc`.
                    unsafe {
                        match mode {
                            Mode::Bf16 if tiles => tile_kernel(lanes, a_strip, b_strip, &tail, tile),
                            // A strip's last columns: only the vectors that hold some (an 8x16
                            // tile computes a third of an 8x48 one).
                            Mode::Bf16 if cols <= 16 => micro_kernel_bf16::<1>(lanes, a_strip, b_strip, tile),
                            Mode::Bf16 if cols <= 32 => micro_kernel_bf16::<2>(lanes, a_strip, b_strip, tile),
                            Mode::Bf16 => micro_kernel_bf16::<NV>(lanes, a_strip, b_strip, tile),
                            Mode::F32 if cols <= 16 => micro_kernel_f32::<1>(lanes, a_strip, b_strip, tile),
                            Mode::F32 if cols <= 32 => micro_kernel_f32::<2>(lanes, a_strip, b_strip, tile),
                            Mode::F32 => micro_kernel_f32::<NV>(lanes, a_strip, b_strip, tile),
                        }
                    };
                }
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (a_strip, b_strip, c_tile, &tail, sum);
            }
        }
    }
}
