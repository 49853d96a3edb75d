//! fer's dense layer (`fer_kernels::dense`, `linear`, `linear_leaky_dropout`): the raw kernel
//! against f64 loops, the burn-facing functions against burn's own `Linear`, and the fused block
//! against the same layers one by one, outputs and gradients.

mod common;

use burn::module::{Module, Param};
use burn::nn::{DropoutConfig, LeakyReluConfig, Linear, LinearConfig};
use burn::tensor::{Device, Distribution, Tensor};
use common::{assert_close, reference_dense, values};
use fer_kernels::dense::{self, DenseShape, DropoutMask, Epilogue, FEW_ROWS};
use fer_kernels::shape::GradientsWanted;
use proptest::prelude::*;

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

/// Tolerance relative to the sums' size: f32 sums of `k` terms of size ~1.
fn tol(k: usize) -> f32 {
    2e-6 * (k as f32).sqrt().max(1.0)
}

fn check_product(s: DenseShape, seed: u64) {
    let (x, w, b, dy) = (
        values(s.batch * s.inputs, seed),
        values(s.inputs * s.outputs, seed + 1),
        values(s.outputs, seed + 2),
        values(s.batch * s.outputs, seed + 3),
    );
    let (y, dx, dw, db) = reference_dense(&x, &w, &b, &dy, &s);
    let got = dense::forward(&x, &w, &b, &s, &Epilogue::default());
    assert_close(&format!("{s:?} output"), &got, &y, tol(s.inputs));
    let g = dense::backward(&x, &w, &[], &dy, &s, &Epilogue::default(), GradientsWanted::ALL);
    assert_close(&format!("{s:?} dx"), &g.dx.expect("dx"), &dx, tol(s.outputs));
    assert_close(&format!("{s:?} dw"), &g.dw.expect("dw"), &dw, tol(s.batch));
    assert_close(&format!("{s:?} db"), &g.db.expect("db"), &db, tol(s.batch));
}

#[test]
fn products_match_the_loops_on_the_paths_each_shape_takes() {
    // Few rows (the `gemm` crate), one core's product, columns split across the cores (a batch
    // against wide weights), rows split (the weight gradient), and edges of the 8 x 48 tile.
    for (batch, inputs, outputs) in [
        (1, 5, 3),
        (FEW_ROWS - 1, 40, 70),
        (FEW_ROWS, 9, 7),
        (128, 300, 100),
        (37, 257, 769),
        (130, 2, 49),
        (64, 640, 96),
    ] {
        check_product(DenseShape { batch, inputs, outputs }, (batch * 31 + inputs) as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn products_match_the_loops_on_random_shapes(
        batch in 1usize..70, inputs in 1usize..140, outputs in 1usize..140, seed in 0u64..1000
    ) {
        check_product(DenseShape { batch, inputs, outputs }, seed);
    }

    /// The epilogue's backward pass routes the gradient exactly as the separate layers' do:
    /// through the same dropout mask, then LeakyReLU's slope where the output is negative.
    #[test]
    fn epilogue_is_the_separate_kernels_to_the_bit(
        batch in 1usize..40, outputs in 1usize..90, prob in 0.05f32..0.9, seed in 0u64..u64::MAX
    ) {
        let s = DenseShape { batch, inputs: 11, outputs };
        let (x, w) = (values(batch * 11, seed), values(11 * outputs, seed ^ 1));
        let (b, dy) = (values(outputs, seed ^ 2), values(batch * outputs, seed ^ 3));
        let e = Epilogue { slope: Some(0.1), dropout: Some(DropoutMask { seed, prob }) };
        let z = dense::forward(&x, &w, &b, &s, &Epilogue::default());
        let leaky = fer_kernels::pointwise::leaky_relu(&z, 0.1);
        let want = fer_kernels::pointwise::dropout(&leaky, seed, prob);
        let y = dense::forward(&x, &w, &b, &s, &e);
        prop_assert_eq!(bits(&y), bits(&want));
        let through_dropout = fer_kernels::pointwise::dropout(&dy, seed, prob);
        let dz = fer_kernels::pointwise::leaky_relu_backward(&leaky, &through_dropout, 0.1);
        let fused = dense::backward(&x, &w, &y, &dy, &s, &e, GradientsWanted::ALL);
        let plain = dense::backward(&x, &w, &[], &dz, &s, &Epilogue::default(), GradientsWanted::ALL);
        prop_assert_eq!(bits(&fused.dx.expect("dx")), bits(&plain.dx.expect("dx")));
        prop_assert_eq!(bits(&fused.dw.expect("dw")), bits(&plain.dw.expect("dw")));
        prop_assert_eq!(bits(&fused.db.expect("db")), bits(&plain.db.expect("db")));
    }
}

/// burn's random generator is one per device and the tests run in parallel: the tests below that
/// draw from it hold this, so that nothing draws between a `seed` and the draws that follow it.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn hold_rng() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|v| v.to_bits()).collect()
}

fn layer(inputs: usize, outputs: usize, device: &Device) -> Linear {
    let mut layer = LinearConfig::new(inputs, outputs).init(device);
    // Biases away from zero, so that a missing bias gradient shows.
    layer.bias = layer
        .bias
        .map(|b| b.map(|_| Tensor::<1>::random([outputs], Distribution::Uniform(-0.5, 0.5), device).require_grad()));
    // burn draws a parameter's initial values at its first use: drawn now, not between a
    // seeding and the dropout mask's draw.
    let _ = layer.weight.val();
    layer
}

/// Output, input gradient, weight gradient and bias gradient of `f` under the output weighting
/// `g`.
fn run(layer: &Linear, x: &Tensor<2>, g: &Tensor<2>, f: impl Fn(Tensor<2>) -> Tensor<2>) -> [Vec<f32>; 4] {
    let x = x.clone().require_grad();
    let y = f(x.clone());
    let grads = (y.clone() * g.clone()).sum().backward();
    let bias = layer.bias.as_ref().map(Param::val).expect("bias");
    [
        to_vec(y),
        to_vec(x.grad(&grads).expect("dx")),
        to_vec(layer.weight.val().grad(&grads).expect("dw")),
        to_vec(bias.grad(&grads).expect("db")),
    ]
}

#[test]
fn linear_matches_burns_layer_outputs_and_gradients() {
    let _rng = hold_rng();
    let device = Device::flex().autodiff();
    assert!(fer_kernels::uses_fast_path(&device, burn::tensor::DType::F32));
    for (batch, inputs, outputs) in [(1, 30, 7), (128, 260, 130), (40, 64, 900)] {
        let layer = layer(inputs, outputs, &device);
        let x = Tensor::<2>::random([batch, inputs], Distribution::Normal(0.0, 1.0), &device);
        let g = Tensor::<2>::random([batch, outputs], Distribution::Uniform(-1.0, 1.0), &device);
        let fast = run(&layer, &x, &g, |x| fer_kernels::linear(&layer, x));
        let plain = run(&layer, &x, &g, |x| layer.forward(x));
        for (name, (f, p)) in ["output", "dx", "dw", "db"].iter().zip(fast.iter().zip(&plain)) {
            assert_close(&format!("{batch}x{inputs}->{outputs} {name}"), f, p, 1e-4);
        }
    }
}

#[test]
fn fused_block_equals_the_layers_one_by_one_with_the_same_masks() {
    let _rng = hold_rng();
    let device = Device::flex().autodiff();
    let layer = layer(70, 150, &device);
    let act = LeakyReluConfig::new().with_negative_slope(0.1).init();
    let drop = DropoutConfig::new(0.4).init();
    let x = Tensor::<2>::random([50, 70], Distribution::Normal(0.0, 1.0), &device);
    let g = Tensor::<2>::random([50, 150], Distribution::Uniform(-1.0, 1.0), &device);
    device.seed(7);
    let fused = run(&layer, &x, &g, |x| fer_kernels::linear_leaky_dropout(&layer, &act, &drop, x));
    device.seed(7);
    let apart = run(&layer, &x, &g, |x| {
        fer_kernels::dropout(&drop, fer_kernels::leaky_relu(&act, fer_kernels::linear(&layer, x)))
    });
    for (name, (f, a)) in ["output", "dx", "dw", "db"].iter().zip(fused.iter().zip(&apart)) {
        let first = bits(f).iter().zip(bits(a)).position(|(f, a)| *f != a);
        assert_eq!(first, None, "{name}: first differing element (of {})", f.len());
    }
    let dropped = fused[0].iter().filter(|&&v| v == 0.0).count() as f64 / fused[0].len() as f64;
    assert!((dropped - 0.4).abs() < 0.05, "dropped share {dropped}, expected 0.4");
    // And against burn's own layers without dropout (the mask aside, the same arithmetic).
    let off = drop.clone().valid();
    let fused = run(&layer, &x, &g, |x| fer_kernels::linear_leaky_dropout(&layer, &act, &off, x));
    let plain = run(&layer, &x, &g, |x| act.forward(layer.forward(x)));
    for (name, (f, p)) in ["output", "dx", "dw", "db"].iter().zip(fused.iter().zip(&plain)) {
        assert_close(&format!("no dropout: {name}"), f, p, 1e-4);
    }
}

#[test]
fn fused_block_at_inference_is_dense_then_leaky_relu() {
    let _rng = hold_rng();
    let device = Device::flex();
    let layer = LinearConfig::new(33, 20).init(&device);
    let act = LeakyReluConfig::new().with_negative_slope(0.2).init();
    let x = Tensor::<2>::random([64, 33], Distribution::Normal(0.0, 1.0), &device);
    let want = to_vec(act.forward(layer.forward(x.clone())));
    // burn's dropout drops only on a gradient device, whether or not the layer is flagged for
    // training; so does the fused block.
    for drop in [DropoutConfig::new(0.5).init(), DropoutConfig::new(0.5).init().valid()] {
        let got = to_vec(fer_kernels::linear_leaky_dropout(&layer, &act, &drop, x.clone()));
        assert_close("inference", &got, &want, 1e-5);
        assert_close("burn's layers", &to_vec(drop.forward(act.forward(layer.forward(x.clone())))), &want, 0.0);
    }
}
