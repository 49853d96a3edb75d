//! fer's convolution against a direct six-loop reference (raw kernels) and against burn's own
//! conv2d on flex (outputs and all three gradients through autodiff).

use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use fer_kernels::conv::{self, ConvShape, GradientsWanted};
use proptest::prelude::*;

mod common;

use common::{assert_close, reference_backward, reference_forward, shapes, values};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn forward_matches_the_direct_loops(s in shapes(), seed in any::<u64>()) {
        let (x, w, b) = (values(s.input_len(), seed), values(s.weight_len(), seed ^ 1), values(s.cout, seed ^ 2));
        assert_close("y", &conv::forward(&x, &w, Some(&b), &s), &reference_forward(&x, &w, &b, &s), 1e-5);
    }

    #[test]
    fn backward_matches_the_direct_loops(s in shapes(), seed in any::<u64>()) {
        let (x, w) = (values(s.input_len(), seed), values(s.weight_len(), seed ^ 1));
        let dy = values(s.output_len(), seed ^ 3);
        let g = conv::backward(&x, &w, &dy, &s, GradientsWanted::ALL);
        let (dx, dw, db) = reference_backward(&x, &w, &dy, &s);
        assert_close("dx", g.dx.as_deref().unwrap_or_default(), &dx, 1e-5);
        assert_close("dw", g.dw.as_deref().unwrap_or_default(), &dw, 1e-5);
        assert_close("db", g.db.as_deref().unwrap_or_default(), &db, 1e-5);
    }
}

#[test]
fn groups_of_small_maps_and_partial_last_group_are_exact() {
    // 6x6 maps are batched 15 images per GEMM; 37 images leave a partial last group.
    let s = ConvShape { n: 37, cin: 3, h: 6, w: 6, cout: 5, kh: 3, kw: 3, pad_h: 1, pad_w: 1 };
    let (x, w, b, dy) =
        (values(s.input_len(), 7), values(s.weight_len(), 8), values(s.cout, 9), values(s.output_len(), 10));
    assert_close("y", &conv::forward(&x, &w, Some(&b), &s), &reference_forward(&x, &w, &b, &s), 1e-5);
    let g = conv::backward(&x, &w, &dy, &s, GradientsWanted::ALL);
    let (dx, dw, db) = reference_backward(&x, &w, &dy, &s);
    assert_close("dx", &g.dx.unwrap_or_default(), &dx, 1e-5);
    assert_close("dw", &g.dw.unwrap_or_default(), &dw, 1e-4);
    assert_close("db", &g.db.unwrap_or_default(), &db, 1e-4);
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

/// The report CNN's layer shapes (smaller batch): fer's kernels against burn's conv2d on flex.
#[test]
fn matches_burn_conv2d_forward_and_gradients_on_flex() {
    let device = Device::flex().autodiff();
    for (cin, cout, side, k) in [(1, 8, 48, 5), (8, 16, 24, 3), (16, 32, 6, 3)] {
        let pad = k / 2;
        let x = Tensor::<4>::random([4, cin, side, side], Distribution::Uniform(-1.0, 1.0), &device);
        let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Uniform(-0.3, 0.3), &device);
        let b = Tensor::<1>::random([cout], Distribution::Uniform(-0.3, 0.3), &device);
        let seed_grad = Tensor::<4>::random([4, cout, side, side], Distribution::Uniform(-1.0, 1.0), &device);
        let run = |fast: bool| {
            let (x, w, b) = (x.clone().require_grad(), w.clone().require_grad(), b.clone().require_grad());
            let y = if fast {
                fer_kernels::conv2d(x.clone(), w.clone(), Some(b.clone()), [pad, pad])
            } else {
                burn_conv2d(x.clone(), w.clone(), Some(b.clone()), ConvOptions::new([1, 1], [pad, pad], [1, 1], 1))
            };
            let grads = (y.clone() * seed_grad.clone()).sum().backward();
            let g = |t: &Tensor<4>| to_vec(t.grad(&grads).expect("gradient"));
            (to_vec(y), g(&x), g(&w), to_vec(b.grad(&grads).expect("bias gradient")))
        };
        assert!(fer_kernels::uses_fast_path(&device, burn::tensor::DType::F32));
        let (fast, plain) = (run(true), run(false));
        let what = format!("cin {cin} cout {cout} side {side} k {k}");
        assert_close(&format!("y, {what}"), &fast.0, &plain.0, 1e-4);
        assert_close(&format!("dx, {what}"), &fast.1, &plain.1, 1e-4);
        assert_close(&format!("dw, {what}"), &fast.2, &plain.2, 1e-3);
        assert_close(&format!("db, {what}"), &fast.3, &plain.3, 1e-3);
    }
}

#[test]
fn backward_is_bitwise_reproducible_however_rayon_schedules_it() {
    let s = ConvShape { n: 64, cin: 8, h: 12, w: 12, cout: 16, kh: 3, kw: 3, pad_h: 1, pad_w: 1 };
    let (x, w, dy) = (values(s.input_len(), 1), values(s.weight_len(), 2), values(s.output_len(), 3));
    let first = conv::backward(&x, &w, &dy, &s, GradientsWanted::ALL);
    for _ in 0..10 {
        let again = conv::backward(&x, &w, &dy, &s, GradientsWanted::ALL);
        assert_eq!(again.dw, first.dw, "weight gradient changed between identical calls");
        assert_eq!(again.db, first.db, "bias gradient changed between identical calls");
        assert_eq!(again.dx, first.dx, "input gradient changed between identical calls");
    }
}

#[test]
fn winograd_forward_and_gradients_match_the_direct_loops_on_odd_maps_and_across_tile_blocks() {
    // F(2x2, 3x3) where it applies (f32 on AVX-512, 3x3 with padding 1, an image per core):
    // odd maps (a last tile half outside), 1x1 and 2x2 maps, blocks of tiles that end inside an
    // image and that span images, and many channels; forward, input gradient (such a
    // convolution too) and weight gradient (summed over tiles in blocks of 128).
    let shapes = [
        ConvShape { n: 4, cin: 3, h: 7, w: 5, cout: 5, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n: 3, cin: 2, h: 1, w: 1, cout: 3, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n: 5, cin: 4, h: 2, w: 2, cout: 9, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n: 2, cin: 6, h: 30, w: 22, cout: 7, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n: 23, cin: 40, h: 6, w: 6, cout: 33, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n: 2, cin: 130, h: 4, w: 4, cout: 17, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
    ];
    for (i, s) in shapes.iter().enumerate() {
        let seed = 100 + i as u64;
        let (x, w, b, dy) = (
            values(s.input_len(), seed),
            values(s.weight_len(), seed ^ 1),
            values(s.cout, seed ^ 2),
            values(s.output_len(), seed ^ 3),
        );
        let want = reference_forward(&x, &w, &b, s);
        let (dx, dw, db) = reference_backward(&x, &w, &dy, s);
        // Rounding only: the transforms add at most a few more roundings per term.
        let tol = 2e-6 * (9.0 * s.cin.max(s.cout) as f32).sqrt();
        assert_close(&format!("{s:?} y"), &conv::forward(&x, &w, Some(&b), s), &want, tol);
        let g = conv::backward(&x, &w, &dy, s, GradientsWanted::ALL);
        assert_close(&format!("{s:?} dx"), g.dx.as_deref().unwrap_or_default(), &dx, tol);
        // The weight gradient sums over every tile of every image.
        let tiles = (s.n * s.h.div_ceil(2) * s.w.div_ceil(2)) as f32;
        assert_close(&format!("{s:?} dw"), g.dw.as_deref().unwrap_or_default(), &dw, 2e-6 * (16.0 * tiles).sqrt());
        assert_close(&format!("{s:?} db"), g.db.as_deref().unwrap_or_default(), &db, 1e-5);
    }
}
