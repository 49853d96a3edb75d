//! The GEMM against an f64 reference, its fast packers against their scalar twins bit for bit,
//! and the AMX kernel against the AVX-512 one. Each runs only where the CPU has the mode.

use super::layout::{MR, TM, tile_lanes};
use super::pack::{pack_a, pack_a_with, pack_tiles, pack_tiles_with};
use super::*;
use crate::bf16::round;
use crate::cpu::amx_tiles;
use crate::scratch::overwrite;
use crate::settings::set_tiles;

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
            let a: Vec<f32> =
                (0..m * (k + 5)).map(|i| ((i * 7919 % 2003) as f32 - 1001.0) * (1.0 + 1.0 / 256.0) / 97.0).collect();
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
    if !amx_tiles() {
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
        let product = |left: Left, c: &mut [f32], sum: Sum| {
            gemm_with(Mode::Bf16, Dims { m, n, k }, left, &sb, Out { c, ldc: n, sum })
        };
        // Packed for the tiles (the default where they exist), and for the vector kernel.
        let packed = PackedA::from_strided(Mode::Bf16, sa, m, k);
        set_tiles(false);
        let vector_packed = PackedA::from_strided(Mode::Bf16, sa, m, k);
        let mut vector = vec![f32::NAN; m * n];
        product(Left::Strided(sa), &mut vector, Sum::Overwrite);
        set_tiles(true);
        assert!(packed.tiles && !vector_packed.tiles, "the packing did not follow the setting");
        let mut tiles = vec![f32::NAN; m * n];
        product(Left::Strided(sa), &mut tiles, Sum::Overwrite);
        let mut from_packed = vec![1.0f32; m * n];
        product(Left::Packed(&packed, 0), &mut from_packed, Sum::Accumulate);
        for (i, ((t, v), w)) in tiles.iter().zip(&vector).zip(&want).enumerate() {
            assert!(
                (t - w).abs() <= tol && (v - w).abs() <= tol,
                "{m}x{n}x{k} [{i}]: tiles {t}, vector {v}, reference {w}"
            );
            assert!(
                (from_packed[i] - (t + 1.0)).abs() <= tol,
                "{m}x{n}x{k} [{i}] packed, accumulated: {} vs {t} + 1",
                from_packed[i]
            );
        }
        if m > TM {
            // Rows from the second strip on, from the operand packed once.
            let mut rest = vec![f32::NAN; (m - TM) * n];
            gemm_with(Mode::Bf16, Dims { m: m - TM, n, k }, Left::Packed(&packed, TM), &sb, Out::write(&mut rest, n));
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
            gemm_with(
                mode,
                Dims { m, n, k },
                Left::Strided(sa),
                &Strided { data: &b, rs: n, cs: 1 },
                Out::write(&mut c, n),
            );
            let scale = want.iter().fold(1.0f32, |s, v| s.max(v.abs()));
            for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-5 * scale * (k as f32).sqrt(), "{mode:?} {m}x{n}x{k} [{i}]: {g} vs {w}");
            }
            // Accumulating adds to what is there; transposed (strided) operands and a left
            // operand packed ahead give the same.
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let packed = PackedA::from_strided(mode, sa, m, k);
            let mut c2 = vec![1.0f32; m * n];
            gemm_with(
                mode,
                Dims { m, n, k },
                Left::Packed(&packed, 0),
                &Strided { data: &bt, rs: 1, cs: k },
                Out::add(&mut c2, n),
            );
            for (g, w) in c2.iter().zip(&c) {
                assert!(
                    (g - (w + 1.0)).abs() <= 1e-5 * scale * (k as f32).sqrt(),
                    "{mode:?} {m}x{n}x{k} accumulated: {g} vs {w} + 1"
                );
            }
        }
    }
}
