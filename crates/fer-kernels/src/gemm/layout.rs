//! The vocabulary of a product: the blocking constants (in one place), the two modes, strided
//! matrices, and the structs that describe a product's sizes and destination.

use crate::bf16::pair;
use crate::{cpu, settings};

/// Rows of the micro-tile (broadcast left-operand lanes).
pub(crate) const MR: usize = 8;
/// 16-lane vectors per micro-tile row.
pub(crate) const NV: usize = 3;
/// Columns of the micro-tile.
pub(crate) const NR: usize = 16 * NV;
/// Lanes per packed k block: 128 lanes keep a 48-column right strip (128 x 48 x 4 bytes = 24 KiB)
/// in Zen 4's 32 KiB L1 while the micro-kernel runs down the left strips.
pub(crate) const SLOTS: usize = 128;
/// Columns per packed right block (128 x 768 x 4 bytes = 384 KiB, within Zen 4's 1 MiB L2).
pub(crate) const NC: usize = 768;
/// Rows of an AMX tile, and of a left strip packed for the tiles.
pub(crate) const TM: usize = 16;
/// Lanes per tile step: 16 lanes of bf16 pairs make a tile row of 64 bytes.
pub(crate) const TK: usize = 16;

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
            Mode::Bf16 => cpu::avx512_bf16(),
            Mode::F32 => cpu::avx512f(),
        }
    }

    /// Lanes that `k` range `k0..k1` packs into.
    pub fn lanes(self, k0: usize, k1: usize) -> usize {
        (k1 - k0).div_ceil(self.per_lane())
    }

    /// `k` values per packed block.
    pub(super) fn kc(self) -> usize {
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

/// Whether products in `mode` packed now run on AMX tiles.
pub(crate) fn tiles_for(mode: Mode) -> bool {
    mode == Mode::Bf16 && settings::tiles() && cpu::amx_tiles()
}

/// Lanes a left operand packed for the tiles holds per row: `lanes` rounded up to a tile step.
pub(super) fn tile_lanes(lanes: usize) -> usize {
    lanes.div_ceil(TK) * TK
}

/// Rows per strip of a packed left operand: [`TM`] for the tiles, `MR` for the micro-kernel.
pub(super) fn strip_rows(tiles: bool) -> usize {
    if tiles { TM } else { MR }
}

/// Lanes per row of a packed left operand's k block of `lanes` lanes.
pub(super) fn left_lanes(tiles: bool, lanes: usize) -> usize {
    if tiles { tile_lanes(lanes) } else { lanes }
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
    pub(super) fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }

    pub(crate) fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            assert!((rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len(), "panel gemm: {what} too small");
        }
    }
}

/// The sizes of a product `c = a · b`: `a` is `m` x `k`, `b` is `k` x `n`, `c` is `m` x `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// Whether a product overwrites its destination or adds to what is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sum {
    Overwrite,
    Accumulate,
}

/// Where a product's `m` x `n` result goes: row `i` at `c[i * ldc..]`.
pub struct Out<'a> {
    pub c: &'a mut [f32],
    pub ldc: usize,
    pub sum: Sum,
}

impl<'a> Out<'a> {
    /// Overwrites `c`.
    pub fn write(c: &'a mut [f32], ldc: usize) -> Self {
        Out { c, ldc, sum: Sum::Overwrite }
    }

    /// Adds to `c`.
    pub fn add(c: &'a mut [f32], ldc: usize) -> Self {
        Out { c, ldc, sum: Sum::Accumulate }
    }
}

/// How many cores one product uses: a lone large product splits the rows of `c` across all of
/// them; products already run one per core stay on theirs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    One,
    All,
}

impl Threads {
    /// [`Threads::All`] when `split`, else [`Threads::One`].
    pub fn all_if(split: bool) -> Self {
        if split { Threads::All } else { Threads::One }
    }
}
