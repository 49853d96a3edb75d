//! The convolutions with `Precision::Bf16`: the direct GEMM against the direct loops on
//! bf16-rounded operands (what its GEMMs multiply), and against the f32 path within bf16's stated
//! tolerance; Winograd's algorithm in bf16 against f64 loops within its own stated tolerance. A
//! test binary of its own, because the precision is a process-wide setting.

mod common;

use common::{assert_close, reference_backward, reference_dense, reference_forward, shapes, values};
use fer_kernels::conv::{self, ConvShape, GradientsWanted};
use fer_kernels::dense::{self, DenseShape, Epilogue, FEW_ROWS};
use fer_kernels::{Precision, bf16};
use proptest::prelude::*;

/// Relative tolerance of a bf16 product summed in f32 against the same sum of rounded operands.
const ROUNDED_TOL: f32 = 1e-4;
/// Against the f32 path: both operands rounded to 8 mantissa bits (2^-9 relative each), errors
/// partly cancelling over the sums: measured below 1% of the output's scale on these shapes.
const F32_TOL: f32 = 2e-2;
/// Winograd in bf16 against the f64 loops, relative to the output's scale: the transformed
/// operands are rounded (each a sum of up to 4 inputs or 9 weights), and the output transform
/// adds up to 9 products' sums. Measured at most 0.61% on these shapes, about twice the direct
/// bf16 GEMM's 0.31%.
const WINOGRAD_TOL: f32 = 1.5e-2;

fn rounded(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| bf16::round(x)).collect()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// `got` within `tol` of `want`, relative to `want`'s largest magnitude.
fn assert_close_to_scale(name: &str, got: &[f32], want: &[f32], tol: f32) {
    let scale = max_abs(want).max(1e-6);
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
    assert!(worst <= tol * scale, "{name}: worst difference {worst} against scale {scale}");
}

/// The precision is process-wide and tests run in parallel: each test holds this while it runs.
static PRECISION: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn hold_precision() -> std::sync::MutexGuard<'static, ()> {
    PRECISION.lock().unwrap_or_else(|e| e.into_inner())
}

/// bf16 forward and backward on `s` by the direct GEMM (Winograd's algorithm, which rounds
/// transformed operands instead, is tested below) against the direct loops on rounded operands.
fn check_rounded(s: &ConvShape, seed: u64) -> Result<(), TestCaseError> {
    let (x, w, b, dy) = (
        values(s.input_len(), seed),
        values(s.weight_len(), seed ^ 1),
        values(s.cout, seed ^ 2),
        values(s.output_len(), seed ^ 3),
    );
    fer_kernels::set_winograd(false);
    let y = conv::forward(&x, &w, Some(&b), s);
    let g = conv::backward(&x, &w, &dy, s, GradientsWanted::ALL);
    fer_kernels::set_winograd(true);
    let (dx, dw, _) = reference_backward(&rounded(&x), &rounded(&w), &rounded(&dy), s);
    assert_close("y", &y, &reference_forward(&rounded(&x), &rounded(&w), &b, s), ROUNDED_TOL);
    assert_close("dx", g.dx.as_deref().unwrap_or_default(), &dx, ROUNDED_TOL);
    assert_close("dw", g.dw.as_deref().unwrap_or_default(), &dw, ROUNDED_TOL * 10.0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every padding, kernel and map size (the im2col matrix is made while packing in bf16 mode).
    #[test]
    fn bf16_convolutions_of_any_small_shape_match_the_rounded_reference(s in shapes(), seed in any::<u64>()) {
        if fer_kernels::cpu::avx512_bf16() {
            let _held = hold_precision();
            fer_kernels::set_precision(Precision::Bf16);
            let checked = check_rounded(&s, seed);
            fer_kernels::set_precision(Precision::F32);
            checked?;
        }
    }
}

#[test]
fn bf16_convolutions_match_the_rounded_reference_and_the_f32_path() {
    let _held = hold_precision();
    if !fer_kernels::cpu::avx512_bf16() {
        eprintln!("skipped: this CPU has no AVX512-BF16 (the setting falls back to f32)");
        fer_kernels::set_precision(Precision::Bf16);
        assert_eq!(fer_kernels::effective_precision(), Precision::F32);
        return;
    }
    let shapes = [
        ConvShape { n: 3, cin: 1, h: 12, w: 11, cout: 9, kh: 5, kw: 5, pad_h: 2, pad_w: 2 },
        ConvShape { n: 37, cin: 6, h: 6, w: 6, cout: 17, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n: 2, cin: 40, h: 8, w: 8, cout: 70, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        // Several k blocks of pixels in the weight gradient (groups of 4 images, 576 columns),
        // and a map wider than one packed panel of columns (900 > 768).
        ConvShape { n: 20, cin: 4, h: 12, w: 12, cout: 10, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n: 2, cin: 2, h: 30, w: 30, cout: 9, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
    ];
    for s in shapes {
        let (x, w, b, dy) =
            (values(s.input_len(), 1), values(s.weight_len(), 2), values(s.cout, 3), values(s.output_len(), 4));
        fer_kernels::set_precision(Precision::F32);
        let y32 = conv::forward(&x, &w, Some(&b), &s);
        let g32 = conv::backward(&x, &w, &dy, &s, GradientsWanted::ALL);
        fer_kernels::set_precision(Precision::Bf16);
        assert_eq!(fer_kernels::effective_precision(), Precision::Bf16);
        // The direct GEMM (safe to switch: every test of this binary holds the precision lock).
        fer_kernels::set_winograd(false);
        let y = conv::forward(&x, &w, Some(&b), &s);
        let g = conv::backward(&x, &w, &dy, &s, GradientsWanted::ALL);
        let again = conv::backward(&x, &w, &dy, &s, GradientsWanted::ALL);
        fer_kernels::set_winograd(true);
        fer_kernels::set_precision(Precision::F32);

        let what = format!("{s:?}");
        // Exactly what was multiplied: rounded operands (the bias is added in f32).
        assert_close(&format!("y {what}"), &y, &reference_forward(&rounded(&x), &rounded(&w), &b, &s), ROUNDED_TOL);
        let (dx, dw, _) = reference_backward(&rounded(&x), &rounded(&w), &rounded(&dy), &s);
        assert_close(&format!("dx {what}"), g.dx.as_deref().unwrap_or_default(), &dx, ROUNDED_TOL);
        assert_close(&format!("dw {what}"), g.dw.as_deref().unwrap_or_default(), &dw, ROUNDED_TOL * 10.0);
        // The bias gradient is a plain f32 sum on both paths.
        assert_eq!(g.db, g32.db, "db {what}");
        // Against f32, within bf16's tolerance, and not identical (the path really ran).
        assert_close_to_scale(&format!("y vs f32 {what}"), &y, &y32, F32_TOL);
        assert_close_to_scale(
            &format!("dx vs f32 {what}"),
            g.dx.as_deref().unwrap_or_default(),
            g32.dx.as_deref().unwrap_or_default(),
            F32_TOL,
        );
        assert_close_to_scale(
            &format!("dw vs f32 {what}"),
            g.dw.as_deref().unwrap_or_default(),
            g32.dw.as_deref().unwrap_or_default(),
            F32_TOL,
        );
        assert_ne!(y, y32, "bf16 gave exactly the f32 result: {what}");
        // Reproducible bit for bit.
        assert_eq!((again.dx, again.dw), (g.dx, g.dw), "bf16 backward changed between identical calls: {what}");
    }
}

/// Winograd's F(2x2, 3x3) in bf16, which 3x3 "same" convolutions of training batches run where
/// the bf16 products are AVX512-BF16 (on AMX tiles the direct GEMM is faster, so the tiles are
/// switched off here to reach it): its
/// products multiply bf16 roundings of the transformed operands, so it is checked against f64
/// loops on the unrounded operands within [`WINOGRAD_TOL`] (forward and input gradient; the
/// weight gradient keeps the direct GEMM in bf16). Odd channel counts (a pair lane's
/// high half empty), one channel, more channels than one bf16 k block (256), odd maps, and tile
/// blocks that cross images and panel strips.
#[test]
fn bf16_winograd_matches_the_f64_loops_within_its_tolerance() {
    let _held = hold_precision();
    if !fer_kernels::cpu::avx512_bf16() {
        eprintln!("skipped: this CPU has no AVX512-BF16");
        return;
    }
    // Winograd runs where every core gets an image.
    let n = rayon::current_num_threads();
    let shapes = [
        ConvShape { n: n.max(4), cin: 3, h: 7, w: 5, cout: 5, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n: n.max(3), cin: 1, h: 9, w: 9, cout: 8, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n: n.max(23), cin: 40, h: 6, w: 6, cout: 33, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n, cin: 6, h: 30, w: 22, cout: 7, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n, cin: 300, h: 4, w: 4, cout: 17, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n, cin: 17, h: 4, w: 3, cout: 300, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
    ];
    for (i, s) in shapes.iter().enumerate() {
        let seed = 200 + i as u64;
        let (x, w, b, dy) = (
            values(s.input_len(), seed),
            values(s.weight_len(), seed ^ 1),
            values(s.cout, seed ^ 2),
            values(s.output_len(), seed ^ 3),
        );
        fer_kernels::set_precision(Precision::Bf16);
        fer_kernels::set_tiles(false);
        let y = conv::forward(&x, &w, Some(&b), s);
        let g = conv::backward(&x, &w, &dy, s, GradientsWanted::ALL);
        let again = conv::backward(&x, &w, &dy, s, GradientsWanted::ALL);
        fer_kernels::set_winograd(false);
        let direct_y = conv::forward(&x, &w, Some(&b), s);
        let direct = conv::backward(&x, &w, &dy, s, GradientsWanted::ALL);
        fer_kernels::set_winograd(true);
        fer_kernels::set_tiles(true);
        fer_kernels::set_precision(Precision::F32);

        let what = format!("{s:?}");
        let want = reference_forward(&x, &w, &b, s);
        let (dx, dw, _) = reference_backward(&x, &w, &dy, s);
        for (name, got, want) in [
            ("y", &y[..], &want[..]),
            ("dx", g.dx.as_deref().unwrap_or_default(), &dx),
            ("dw", g.dw.as_deref().unwrap_or_default(), &dw),
        ] {
            let scale = max_abs(want).max(1e-6);
            let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
            eprintln!("bf16 {name} {what}: worst difference {:.2e} of the scale", worst / scale);
            assert_close_to_scale(&format!("{name} {what}"), got, want, WINOGRAD_TOL);
        }
        for (name, got, want) in
            [("y", &direct_y[..], &want[..]), ("dx", direct.dx.as_deref().unwrap_or_default(), &dx)]
        {
            let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
            eprintln!(
                "bf16 direct {name} {what}: worst difference {:.2e} of the scale",
                worst / max_abs(want).max(1e-6)
            );
        }
        // Another sum than the direct GEMM's (the path really ran); the weight gradient stays the
        // direct GEMM's in bf16, and the bias gradient a plain f32 sum in the same order; all
        // reproducible bit for bit.
        assert_ne!(y, direct_y, "bf16 Winograd gave exactly the direct result: {what}");
        assert_ne!(g.dx, direct.dx, "bf16 Winograd gave exactly the direct input gradient: {what}");
        assert_eq!(g.dw, direct.dw, "dw {what}");
        assert_eq!(g.db, direct.db, "db {what}");
        assert_eq!((again.dx, again.dw), (g.dx, g.dw), "bf16 Winograd changed between identical calls: {what}");
    }
}

/// On AMX tiles (where the CPU has them: the default for bf16 there) the convolutions match the
/// rounded reference as the AVX512-BF16 micro-kernel does, and differ from it only by rounding
/// (another summation order, subnormal products flushed to zero).
#[test]
fn bf16_convolutions_on_amx_tiles_match_the_rounded_reference_and_the_vector_path() {
    let _held = hold_precision();
    if !fer_kernels::cpu::amx_tiles() {
        eprintln!("skipped: this CPU (or kernel) gives no AMX tiles");
        return;
    }
    let shapes = [
        ConvShape { n: 3, cin: 1, h: 12, w: 11, cout: 9, kh: 5, kw: 5, pad_h: 2, pad_w: 2 },
        ConvShape { n: 4, cin: 40, h: 8, w: 8, cout: 70, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n: 2, cin: 130, h: 6, w: 6, cout: 33, kh: 3, kw: 3, pad_h: 1, pad_w: 1 },
        ConvShape { n: 5, cin: 6, h: 7, w: 9, cout: 17, kh: 3, kw: 3, pad_h: 0, pad_w: 1 },
    ];
    for (i, s) in shapes.iter().enumerate() {
        let seed = 300 + i as u64;
        let (x, w, b, dy) = (
            values(s.input_len(), seed),
            values(s.weight_len(), seed ^ 1),
            values(s.cout, seed ^ 2),
            values(s.output_len(), seed ^ 3),
        );
        fer_kernels::set_precision(Precision::Bf16);
        let run = || (conv::forward(&x, &w, Some(&b), s), conv::backward(&x, &w, &dy, s, GradientsWanted::ALL));
        let (y, g) = run();
        let (y_again, g_again) = run();
        // The direct GEMM on AVX512-BF16 (Winograd's algorithm would take these 3x3 shapes there).
        fer_kernels::set_tiles(false);
        fer_kernels::set_winograd(false);
        let (vector_y, vector_g) = run();
        fer_kernels::set_winograd(true);
        fer_kernels::set_tiles(true);
        fer_kernels::set_precision(Precision::F32);
        let what = format!("{s:?}");
        let (dx, dw, _) = reference_backward(&rounded(&x), &rounded(&w), &rounded(&dy), s);
        assert_close(&format!("y {what}"), &y, &reference_forward(&rounded(&x), &rounded(&w), &b, s), ROUNDED_TOL);
        assert_close(&format!("dx {what}"), g.dx.as_deref().unwrap_or_default(), &dx, ROUNDED_TOL);
        assert_close(&format!("dw {what}"), g.dw.as_deref().unwrap_or_default(), &dw, ROUNDED_TOL * 10.0);
        assert_close(&format!("y vs vector {what}"), &y, &vector_y, ROUNDED_TOL);
        assert_close(
            &format!("dw vs vector {what}"),
            g.dw.as_deref().unwrap_or_default(),
            vector_g.dw.as_deref().unwrap_or_default(),
            ROUNDED_TOL * 10.0,
        );
        assert_eq!(
            (y_again, g_again.dx, g_again.dw),
            (y, g.dx, g.dw),
            "AMX results changed between identical calls: {what}"
        );
    }
}

#[test]
fn prepacked_weights_give_exactly_the_unpacked_result() {
    let _held = hold_precision();
    let s = ConvShape { n: 3, cin: 6, h: 7, w: 7, cout: 10, kh: 3, kw: 3, pad_h: 1, pad_w: 1 };
    let (x, w, b) = (values(s.input_len(), 11), values(s.weight_len(), 12), values(s.cout, 13));
    let finish = conv::Finish { shift: Some(&b), slope: Some(0.1), ..conv::Finish::default() };
    fer_kernels::set_precision(Precision::F32);
    // f32 packs ahead where it runs in fer's own GEMM (AVX-512F), in the weights' own order.
    let f32_packed = conv::pack_weights(&w, &s);
    assert_eq!(f32_packed.is_some(), fer_kernels::gemm::Mode::F32.available());
    if let Some(packed) = &f32_packed {
        // Pre-packed weights run the direct GEMM (inference); unpacked ones would take Winograd's
        // algorithm for this 3x3 shape, a different sum, so it is switched off for the comparison
        // (safe here: every test of this binary holds the precision lock).
        fer_kernels::set_winograd(false);
        let y = conv::forward_activated(&x, &w, &finish, &s);
        fer_kernels::set_winograd(true);
        assert_eq!(y, conv::forward_prepacked(&x, &w, Some(packed), &finish, &s));
    }
    if !fer_kernels::cpu::avx512_bf16() {
        return;
    }
    fer_kernels::set_precision(Precision::Bf16);
    let packed = conv::pack_weights(&w, &s).expect("bf16 with an even number of input channels packs its weights");
    // As in f32: the unpacked weights' direct GEMM (Winograd's algorithm would run otherwise).
    fer_kernels::set_winograd(false);
    let y = conv::forward_activated(&x, &w, &finish, &s);
    fer_kernels::set_winograd(true);
    let again = conv::forward_prepacked(&x, &w, Some(&packed), &finish, &s);
    let odd = ConvShape { cin: 5, ..s };
    let odd_packed = conv::pack_weights(&values(odd.weight_len(), 14), &odd);
    fer_kernels::set_precision(Precision::F32);
    assert_eq!(y, again);
    assert!(odd_packed.is_none(), "an odd number of input channels takes the im2col path");
}

/// Inference keeps each weight buffer's packed form: the same model gives the same answer, and
/// another model (other weights) never gets the first one's.
#[test]
fn bf16_inference_packs_weights_once_per_buffer_and_never_serves_stale_ones() {
    use burn::nn::conv::{Conv2d, Conv2dConfig};
    use burn::nn::{BatchNormConfig, LeakyReluConfig, PaddingConfig2d};
    use burn::tensor::{Device, Tensor, TensorData};
    let _held = hold_precision();
    if !fer_kernels::cpu::avx512_bf16() {
        return;
    }
    let device = Device::flex();
    let to_vec = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
    let make_conv = |seed: u64| {
        let mut conv = Conv2dConfig::new([4, 6], [3, 3]).with_padding(PaddingConfig2d::Same).init(&device);
        conv.weight = conv
            .weight
            .map(|_| Tensor::<4>::from_data(TensorData::new(values(6 * 4 * 9, seed), [6, 4, 3, 3]), &device));
        conv
    };
    let bn = BatchNormConfig::new(6).init(&device);
    let act = LeakyReluConfig::new().with_negative_slope(0.1).init();
    let x = Tensor::<4>::from_data(TensorData::new(values(2 * 4 * 7 * 7, 9), [2, 4, 7, 7]), &device);
    let (a, b) = (make_conv(1), make_conv(2));
    let fused = |conv: &Conv2d| {
        to_vec(fer_kernels::conv_block_inference(conv, &bn, &act, x.clone()).expect("fast path on flex"))
    };
    fer_kernels::set_precision(Precision::Bf16);
    let (first, again, other) = (fused(&a), fused(&a), fused(&b));
    fer_kernels::set_precision(Precision::F32);
    let plain = |conv: &Conv2d| to_vec(act.forward(bn.forward(conv.forward(x.clone()))));
    assert_eq!(first, again, "the cached packing changed the answer");
    assert_close_to_scale("model a", &first, &plain(&a), F32_TOL);
    assert_close_to_scale("model b", &other, &plain(&b), F32_TOL);
    assert_ne!(first, other);
}

#[test]
fn bf16_dense_layers_match_the_rounded_reference_and_few_rows_stay_f32() {
    let _held = hold_precision();
    if !fer_kernels::cpu::avx512_bf16() {
        eprintln!("skipped: this CPU has no AVX512-BF16");
        return;
    }
    fer_kernels::set_precision(Precision::Bf16);
    for (batch, inputs, outputs, seed) in
        [(FEW_ROWS, 33, 50, 1), (128, 301, 97, 2), (40, 64, 900, 3), (FEW_ROWS - 1, 70, 20, 4), (1, 9, 7, 5)]
    {
        let s = DenseShape { batch, inputs, outputs };
        let (x, w, b, dy) = (
            values(batch * inputs, seed),
            values(inputs * outputs, seed ^ 1),
            values(outputs, seed ^ 2),
            values(batch * outputs, seed ^ 3),
        );
        let y = dense::forward(&x, &w, &b, &s, &Epilogue::default());
        let g = dense::backward(&x, &w, &[], &dy, &s, &Epilogue::default(), GradientsWanted::ALL);
        // Below FEW_ROWS the products run in f32 (the `gemm` crate), at or above it in bf16.
        let (want, tol) = if batch >= FEW_ROWS {
            (reference_dense(&rounded(&x), &rounded(&w), &b, &rounded(&dy), &s), ROUNDED_TOL)
        } else {
            (reference_dense(&x, &w, &b, &dy, &s), 1e-5)
        };
        let name = format!("{batch}x{inputs}->{outputs}");
        assert_close(&format!("{name} y"), &y, &want.0, tol);
        assert_close(&format!("{name} dx"), g.dx.as_deref().unwrap_or_default(), &want.1, tol);
        assert_close(&format!("{name} dw"), g.dw.as_deref().unwrap_or_default(), &want.2, tol * 10.0);
        // The bias gradient sums dy itself, in f32, at any precision.
        assert_close(
            &format!("{name} db"),
            g.db.as_deref().unwrap_or_default(),
            &reference_dense(&x, &w, &b, &dy, &s).3,
            1e-5,
        );
    }
    fer_kernels::set_precision(Precision::F32);
}
