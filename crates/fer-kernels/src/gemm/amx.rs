//! The AMX kernel (Sapphire Rapids and later): `tdpbf16ps` multiplies a 16 x 32 bf16 tile by a
//! 32 x 16 one into 16 x 16 `f32` sums, eight times the multiply-adds of `vdpbf16ps` per cycle.
//! The right panels are already in the tiles' pair layout; left operands are packed row-major
//! for them (`pack::pack_tiles`).

#[cfg(target_arch = "x86_64")]
use super::avx512::{Tile, store_row};
use super::layout::TM;
#[cfg(target_arch = "x86_64")]
use super::layout::{NR, NV, TK, tile_lanes};

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
/// The CPU has AMX and Linux granted the tile state ([`crate::cpu::amx_tiles`]).
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn configure_tiles() {
    // SAFETY: see above; the configuration is 64 valid bytes.
    unsafe { std::arch::asm!("ldtilecfg [{}]", in(reg) &TILE_CONFIG.0, options(nostack, readonly)) };
}

/// `c[r][j] (+)= Σ_p a_strip[r][p] · b_strip[p][j]` on the AMX tiles (configured by
/// [`configure_tiles`]) over `lanes` lanes: `a_strip` 16 rows of [`tile_lanes`] lanes,
/// `b_strip` `lanes` rows of NR lanes, `tail` its last partial tile step zero-padded to 16 rows.
/// Three 16 x 16 sums cover the strip's 48 columns; the tile's `rows` x `cols` corner is stored.
///
/// # Safety
/// The CPU has AMX and AVX-512F, Linux granted the tile state, and [`configure_tiles`] ran on
/// this thread: the tile instructions use the configured shapes. The operands' bounds are asserted.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn tile_kernel(lanes: usize, a_strip: &[u32], b_strip: &[u32], tail: &[u32], tile: Tile) {
    use std::arch::asm;
    use std::arch::x86_64::*;
    let width = tile_lanes(lanes);
    assert!(a_strip.len() >= TM * width && b_strip.len() >= lanes * NR && tail.len() >= TK * NR);
    tile.check(TM);
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
        for r in 0..tile.rows {
            let row: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(sums.as_ptr().add(r * NR + 16 * v)));
            store_row(&row, tile.c.as_mut_ptr().add(r * tile.ldc), tile.cols, tile.sum);
        }
    }
}
