//! The convolutions with `Precision::Bf16`: against the direct loops on bf16-rounded operands
//! (what the GEMMs multiply), and against the f32 path within bf16's stated tolerance. A test
//! binary of its own, because the precision is a process-wide setting.

mod common;

use common::{assert_close, reference_backward, reference_forward, shapes, values};
use fer_kernels::conv::{self, ConvShape};
use fer_kernels::{Precision, bf16};
use proptest::prelude::*;

/// Relative tolerance of a bf16 product summed in f32 against the same sum of rounded operands.
const ROUNDED_TOL: f32 = 1e-4;
/// Against the f32 path: both operands rounded to 8 mantissa bits (2^-9 relative each), errors
/// partly cancelling over the sums: measured below 1% of the output's scale on these shapes.
const F32_TOL: f32 = 2e-2;

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

/// bf16 forward and backward on `s` against the direct loops on rounded operands.
fn check_rounded(s: &ConvShape, seed: u64) -> Result<(), TestCaseError> {
    let (x, w, b, dy) = (values(s.input_len(), seed), values(s.weight_len(), seed ^ 1), values(s.cout, seed ^ 2), values(s.output_len(), seed ^ 3));
    let y = conv::forward(&x, &w, Some(&b), s);
    let g = conv::backward(&x, &w, &dy, s, true, true, true);
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
        if bf16::available() {
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
    if !bf16::available() {
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
        let (x, w, b, dy) = (values(s.input_len(), 1), values(s.weight_len(), 2), values(s.cout, 3), values(s.output_len(), 4));
        fer_kernels::set_precision(Precision::F32);
        let y32 = conv::forward(&x, &w, Some(&b), &s);
        let g32 = conv::backward(&x, &w, &dy, &s, true, true, true);
        fer_kernels::set_precision(Precision::Bf16);
        assert_eq!(fer_kernels::effective_precision(), Precision::Bf16);
        let y = conv::forward(&x, &w, Some(&b), &s);
        let g = conv::backward(&x, &w, &dy, &s, true, true, true);
        let again = conv::backward(&x, &w, &dy, &s, true, true, true);
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
        assert_close_to_scale(&format!("dx vs f32 {what}"), g.dx.as_deref().unwrap_or_default(), g32.dx.as_deref().unwrap_or_default(), F32_TOL);
        assert_close_to_scale(&format!("dw vs f32 {what}"), g.dw.as_deref().unwrap_or_default(), g32.dw.as_deref().unwrap_or_default(), F32_TOL);
        assert_ne!(y, y32, "bf16 gave exactly the f32 result: {what}");
        // Reproducible bit for bit.
        assert_eq!((again.dx, again.dw), (g.dx, g.dw), "bf16 backward changed between identical calls: {what}");
    }
}
