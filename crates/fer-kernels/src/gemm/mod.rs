//! Every matrix product in fer's kernels, through one entry: [`kernel`] says which GEMM runs,
//! [`multiply`] multiplies strided matrices with it, and [`multiply_in`] runs fer's own GEMM on
//! operands that pack themselves (a convolution's input, weights packed ahead). Convolutions,
//! Winograd's products and dense layers all come here; nothing else calls a GEMM.
//!
//! fer's own GEMM: packed panels and an 8 x 48 AVX-512 micro-kernel, in two modes that share
//! everything but the inner instruction.
//!
//! - [`Mode::Bf16`]: `f32` operands rounded to bfloat16, products summed in `f32`, on CPUs with
//!   AVX512-BF16 (`vdpbf16ps`: Zen 4 and later, Cooper Lake, Sapphire Rapids and later). One
//!   instruction does 16 lanes x 2 multiply-adds, twice an FMA's work, and each 32-bit panel lane
//!   holds two consecutive `k` values (low half `k`, high half `k + 1`), the pairing the
//!   instruction multiplies. Only the GEMMs see bf16, as PyTorch's autocast does.
//! - [`Mode::F32`]: plain `f32` FMAs (AVX-512F), one `k` value per lane.
//!
//! On CPUs with AMX (Sapphire Rapids and later), bf16 products run on its tiles instead
//! ([`crate::cpu::amx_tiles`]): `tdpbf16ps` multiplies a 16 x 32 bf16 tile by a 32 x 16 one into 16 x 16
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
//! packs its panels straight from the input (`conv::operands`), and a left operand reused by
//! every image group is packed once ([`PackedA`]).
//!
//! The summation order is fixed (k blocks in order, lanes in order), so results repeat bit for
//! bit.
//!
//! | file | holds |
//! |---|---|
//! | `layout.rs` | blocking constants, [`Mode`], [`Strided`], [`Dims`], [`Out`], [`Threads`] |
//! | `pack.rs` | the packers (left strips, AMX rows, right strips, gathers) |
//! | `operands.rs` | [`Left`], [`Right`], [`PackedA`] |
//! | `avx512.rs` | the micro-kernel and the stores |
//! | `amx.rs` | the tile configuration and kernel |
//! | `driver.rs` | the loop nest ([`gemm_with`]) |
//! | `portable.rs` | the `gemm` crate, for every other CPU |

mod amx;
mod avx512;
mod driver;
mod layout;
mod operands;
mod pack;
mod portable;
#[cfg(test)]
mod tests;

use rayon::prelude::*;

pub use driver::{gemm_bf16, gemm_with};
pub use layout::{Dims, Mode, Out, Strided, Sum, Threads};
pub(crate) use layout::{NR, SLOTS, tiles_for};
pub use operands::{Left, PackedA, Right};

use crate::settings::{self, Precision};

/// The GEMM the convolutions and dense layers run: fer's own in this mode, or `None` for the
/// portable one (im2col and the `gemm` crate). bf16 where asked for and the CPU has it; `f32` in
/// fer's own where the CPU has AVX-512F and [`settings::set_panel_f32`] allows it.
pub fn kernel() -> Option<Mode> {
    if settings::effective_precision() == Precision::Bf16 {
        Some(Mode::Bf16)
    } else if settings::panel_f32() && Mode::F32.available() {
        Some(Mode::F32)
    } else {
        None
    }
}

/// `c = a · b` (or `c += a · b`) of strided matrices, in the GEMM [`kernel`] picks.
pub(crate) fn multiply(dims: Dims, a: Strided, b: Strided, out: Out, threads: Threads) {
    match kernel() {
        Some(mode) => {
            a.check(dims.m, dims.k, "a");
            b.check(dims.k, dims.n, "b");
            multiply_in(mode, dims, Left::Strided(a), &b, out, threads);
        }
        None => portable::multiply(dims, a, b, out, threads),
    }
}

/// [`multiply`] in the portable GEMM whatever [`kernel`] says: dense layers with few rows,
/// where packing costs more than it saves.
pub(crate) fn multiply_portable(dims: Dims, a: Strided, b: Strided, out: Out, threads: Threads) {
    portable::multiply(dims, a, b, out, threads);
}

/// [`gemm_with`] in `mode`; [`Threads::All`] splits the rows of `c` across the cores, in blocks
/// of a multiple of 16 (an AMX strip, two micro-kernel ones).
pub(crate) fn multiply_in(mode: Mode, dims: Dims, a: Left, b: &impl Right, out: Out, threads: Threads) {
    let Dims { m, n, .. } = dims;
    let threads = match threads {
        Threads::All => rayon::current_num_threads(),
        Threads::One => 1,
    };
    let rows = m.div_ceil(threads).div_ceil(16) * 16;
    if threads == 1 || rows >= m || m == 0 || n == 0 {
        gemm_with(mode, dims, a, b, out);
        return;
    }
    let Out { c, ldc, sum } = out;
    let used = (m - 1) * ldc + n;
    c[..used].par_chunks_mut(rows * ldc).enumerate().for_each(|(part, c)| {
        let first = part * rows;
        let count = rows.min(m - first);
        let a = match a {
            Left::Strided(a) => Left::Strided(Strided { data: &a.data[first * a.rs..], ..a }),
            Left::Packed(p, f) => Left::Packed(p, f + first),
        };
        gemm_with(mode, Dims { m: count, ..dims }, a, b, Out { c, ldc, sum });
    });
}
