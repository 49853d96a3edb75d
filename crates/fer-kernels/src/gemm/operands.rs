//! The operands of a product: the left one strided or packed ahead ([`PackedA`]), the right one
//! anything that packs itself ([`Right`]), so a convolution packs its panels straight from its
//! input and never writes the im2col matrix.

use super::layout::{Mode, Strided, left_lanes, strip_rows, tiles_for};
use super::pack::{pack_a_with, pack_b, pack_tiles_with};
use crate::scratch::overwrite;

/// A left operand packed once for every k block, for products that reuse it: a convolution's
/// weights are the left operand of every image group's GEMM, and used to be packed again for
/// each (6% of a training step).
pub struct PackedA {
    pub(super) mode: Mode,
    m: usize,
    pub(super) k: usize,
    /// Packed for the AMX tiles ([`pack_tiles_with`]) rather than in MR-row strips.
    pub(super) tiles: bool,
    data: Vec<u32>,
}

impl PackedA {
    /// Packs the `m` x `k` matrix `at(row, k)`, k blocks in parallel.
    pub fn new(mode: Mode, m: usize, k: usize, at: impl Fn(usize, usize) -> f32 + Sync) -> Self {
        use rayon::prelude::*;
        let tiles = tiles_for(mode);
        let block_len = |k0: usize, k1: usize| {
            m.div_ceil(strip_rows(tiles)) * strip_rows(tiles) * left_lanes(tiles, mode.lanes(k0, k1))
        };
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
        parts.into_par_iter().for_each(|(k0, k1, block)| {
            if tiles { pack_tiles_with(m, k0, k1, block, &at) } else { pack_a_with(mode, m, k0, k1, block, &at) }
        });
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
    pub(super) fn strips(&self, k0: usize, first: usize, count: usize) -> &[u32] {
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
