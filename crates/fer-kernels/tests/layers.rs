//! fer's BatchNorm, LeakyReLU, max-pool and dropout kernels against burn's own layers on flex:
//! outputs, gradients and (BatchNorm) running statistics.

use burn::module::Module;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, DropoutConfig, LeakyReluConfig};
use burn::tensor::{Device, Distribution, Tensor};

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{name}[{i}]: got {g}, want {w}");
    }
}

fn device() -> Device {
    let device = Device::flex().autodiff();
    assert!(fer_kernels::uses_fast_path(&device, burn::tensor::DType::F32));
    device
}

/// Output and input gradient (under a random output weighting) of `f` on `x`.
fn run<const D: usize>(
    x: &Tensor<D>,
    seed_grad: &Tensor<D>,
    f: impl Fn(Tensor<D>) -> Tensor<D>,
) -> (Vec<f32>, Vec<f32>) {
    let x = x.clone().require_grad();
    let y = f(x.clone());
    let grads = (y.clone() * seed_grad.clone()).sum().backward();
    (to_vec(y), to_vec(x.grad(&grads).expect("input gradient")))
}

#[test]
fn batch_norm_matches_burn_in_training_and_inference() {
    let device = device();
    for dims in [[6usize, 4, 5, 5], [9, 3, 1, 1]] {
        let x = Tensor::<4>::random(dims, Distribution::Normal(0.5, 2.0), &device);
        let g = Tensor::<4>::random(dims, Distribution::Uniform(-1.0, 1.0), &device);
        let c = dims[1];
        let gamma = Tensor::<1>::random([c], Distribution::Uniform(0.5, 1.5), &device);
        let beta = Tensor::<1>::random([c], Distribution::Uniform(-0.5, 0.5), &device);
        let make = || {
            let mut bn = BatchNormConfig::new(c).init(&device);
            bn.gamma = bn.gamma.map(|_| gamma.clone().require_grad());
            bn.beta = bn.beta.map(|_| beta.clone().require_grad());
            bn
        };
        let (fast_bn, plain_bn) = (make(), make());
        let fast = run(&x, &g, |x| fer_kernels::batch_norm(&fast_bn, x));
        let plain = run(&x, &g, |x| plain_bn.forward(x));
        assert_close("bn output", &fast.0, &plain.0, 1e-4);
        assert_close("bn input gradient", &fast.1, &plain.1, 1e-3);
        assert_close(
            "running mean",
            &to_vec(fast_bn.running_mean.value()),
            &to_vec(plain_bn.running_mean.value()),
            1e-5,
        );
        assert_close("running var", &to_vec(fast_bn.running_var.value()), &to_vec(plain_bn.running_var.value()), 1e-5);
        // gamma and beta gradients.
        let grads_of = |bn: &burn::nn::BatchNorm, fast: bool| {
            let y = if fast { fer_kernels::batch_norm(bn, x.clone()) } else { bn.forward(x.clone()) };
            let grads = (y * g.clone()).sum().backward();
            (to_vec(bn.gamma.val().grad(&grads).expect("gamma")), to_vec(bn.beta.val().grad(&grads).expect("beta")))
        };
        let (fg, fb) = grads_of(&fast_bn, true);
        let (pg, pb) = grads_of(&plain_bn, false);
        assert_close("gamma gradient", &fg, &pg, 1e-3);
        assert_close("beta gradient", &fb, &pb, 1e-3);
        // Inference (plain device): running statistics.
        let xi = x.clone().inner();
        let infer_fast = to_vec(fer_kernels::batch_norm(&fast_bn.valid(), xi.clone()));
        let infer_plain = to_vec(plain_bn.valid().forward(xi));
        assert_close("bn inference", &infer_fast, &infer_plain, 1e-4);
    }
}

#[test]
fn leaky_relu_and_max_pool_match_burn() {
    let device = device();
    let x = Tensor::<4>::random([3, 5, 8, 7], Distribution::Normal(0.0, 1.0), &device);
    let g = Tensor::<4>::random([3, 5, 8, 7], Distribution::Uniform(-1.0, 1.0), &device);
    let act = LeakyReluConfig::new().with_negative_slope(0.1).init();
    let fast = run(&x, &g, |x| fer_kernels::leaky_relu(&act, x));
    let plain = run(&x, &g, |x| act.forward(x));
    assert_close("leaky relu", &fast.0, &plain.0, 1e-6);
    assert_close("leaky relu gradient", &fast.1, &plain.1, 1e-6);

    let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
    let gp = Tensor::<4>::random([3, 5, 4, 3], Distribution::Uniform(-1.0, 1.0), &device);
    let pooled = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
        let x = x.clone().require_grad();
        let y = f(x.clone());
        let grads = (y.clone() * gp.clone()).sum().backward();
        (to_vec(y), to_vec(x.grad(&grads).expect("pool gradient")))
    };
    let fast = pooled(&|x| fer_kernels::max_pool2d(&pool, x));
    let plain = pooled(&|x| pool.forward(x));
    assert_close("max pool (odd width 7 drops the last column)", &fast.0, &plain.0, 0.0);
    assert_close("max pool gradient", &fast.1, &plain.1, 0.0);
}

#[test]
fn dropout_keeps_the_expected_share_scales_and_routes_gradients_through_the_same_mask() {
    let device = device();
    let layer = DropoutConfig::new(0.3).init();
    let x = Tensor::<2>::random([200, 500], Distribution::Uniform(1.0, 2.0), &device).require_grad();
    let y = fer_kernels::dropout(&layer, x.clone());
    let grads = y.clone().sum().backward();
    let (xs, ys, gs) = (to_vec(x.clone()), to_vec(y), to_vec(x.grad(&grads).expect("dropout gradient")));
    let kept = ys.iter().filter(|&&v| v != 0.0).count() as f64 / ys.len() as f64;
    assert!((kept - 0.7).abs() < 0.01, "kept share {kept}, expected 0.7");
    for i in 0..ys.len() {
        if ys[i] != 0.0 {
            assert!((ys[i] - xs[i] / 0.7).abs() < 1e-5, "kept element {i} not scaled by 1/0.7");
            assert!((gs[i] - 1.0 / 0.7).abs() < 1e-5, "gradient of kept element {i}");
        } else {
            assert_eq!(gs[i], 0.0, "gradient of dropped element {i}");
        }
    }
    // The mask comes from the device's seeded generator: same seed, same mask; new draw, new mask.
    let mask = |seed: u64| {
        device.seed(seed);
        to_vec(fer_kernels::dropout(&layer, Tensor::<2>::ones([50, 50], &device)))
    };
    assert_eq!(mask(5), mask(5));
    assert_ne!(mask(5), mask(6));
}

#[test]
fn fused_inference_block_matches_conv_batchnorm_leaky_relu_one_by_one() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    let device = Device::flex();
    let conv = Conv2dConfig::new([3, 6], [3, 3]).with_padding(PaddingConfig2d::Same).init(&device);
    let mut bn = BatchNormConfig::new(6).init(&device);
    bn.gamma = bn.gamma.map(|_| Tensor::<1>::random([6], Distribution::Uniform(0.5, 1.5), &device));
    bn.beta = bn.beta.map(|_| Tensor::<1>::random([6], Distribution::Uniform(-0.5, 0.5), &device));
    bn.running_mean.update(Tensor::<1>::random([6], Distribution::Uniform(-0.2, 0.2), &device));
    bn.running_var.update(Tensor::<1>::random([6], Distribution::Uniform(0.5, 2.0), &device));
    let act = LeakyReluConfig::new().with_negative_slope(0.1).init();
    for n in [1, 20] {
        let x = Tensor::<4>::random([n, 3, 9, 9], Distribution::Normal(0.0, 1.0), &device);
        let fused = fer_kernels::conv_block_inference(&conv, &bn, &act, x.clone())
            .expect("the fast path applies on flex without autodiff");
        let plain = act.forward(bn.forward(conv.forward(x)));
        assert_close(&format!("fused block, batch {n}"), &to_vec(fused), &to_vec(plain), 1e-4);
    }
    // On a gradient device the caller must run the layers one by one.
    let ad = Device::flex().autodiff();
    assert!(fer_kernels::conv_block_inference(&conv, &bn, &act, Tensor::<4>::zeros([1, 3, 9, 9], &ad)).is_err());
}

#[test]
fn fused_batch_norm_leaky_relu_training_matches_the_two_burn_layers() {
    let device = device();
    let dims = [5usize, 4, 6, 6];
    let x = Tensor::<4>::random(dims, Distribution::Normal(0.2, 1.5), &device);
    let g = Tensor::<4>::random(dims, Distribution::Uniform(-1.0, 1.0), &device);
    let gamma = Tensor::<1>::random([4], Distribution::Uniform(0.5, 1.5), &device);
    let beta = Tensor::<1>::random([4], Distribution::Uniform(-0.5, 0.5), &device);
    let make = || {
        let mut bn = BatchNormConfig::new(4).init(&device);
        bn.gamma = bn.gamma.map(|_| gamma.clone().require_grad());
        bn.beta = bn.beta.map(|_| beta.clone().require_grad());
        bn
    };
    let act = LeakyReluConfig::new().with_negative_slope(0.1).init();
    let (fast_bn, plain_bn) = (make(), make());
    let grads_of = |bn: &burn::nn::BatchNorm, fast: bool| {
        let x = x.clone().require_grad();
        let y = if fast {
            fer_kernels::batch_norm_leaky_train(bn, &act, x.clone()).expect("fast path applies")
        } else {
            act.forward(bn.forward(x.clone()))
        };
        let grads = (y.clone() * g.clone()).sum().backward();
        let grad = |t: Tensor<1>| to_vec(t.grad(&grads).expect("parameter gradient"));
        (to_vec(y), to_vec(x.grad(&grads).expect("input gradient")), grad(bn.gamma.val()), grad(bn.beta.val()))
    };
    let (fast, plain) = (grads_of(&fast_bn, true), grads_of(&plain_bn, false));
    assert_close("output", &fast.0, &plain.0, 1e-4);
    assert_close("input gradient", &fast.1, &plain.1, 1e-3);
    assert_close("gamma gradient", &fast.2, &plain.2, 1e-3);
    assert_close("beta gradient", &fast.3, &plain.3, 1e-3);
    assert_close("running mean", &to_vec(fast_bn.running_mean.value()), &to_vec(plain_bn.running_mean.value()), 1e-5);
    // Not training (plain device): the caller must run the layers itself.
    assert!(fer_kernels::batch_norm_leaky_train(&fast_bn, &act, x.clone().inner()).is_err());
}

#[test]
fn dropout_kernel_draws_the_mask_of_its_scalar_definition_on_every_cpu_path() {
    // The AVX-512 copy of the loop must give exactly the mask `dropout_keeps` defines.
    let x: Vec<f32> = (0..100_000).map(|i| 1.0 + (i % 7) as f32).collect();
    let (seed, prob) = (0x1234_5678_9abc_def0, 0.4f32);
    let y = fer_kernels::pointwise::dropout(&x, seed, prob);
    for (i, (&xv, &yv)) in x.iter().zip(&y).enumerate() {
        let want = if fer_kernels::pointwise::dropout_keeps(seed, i as u64, 1.0 - prob) {
            xv * (1.0 / (1.0 - prob))
        } else {
            0.0
        };
        assert_eq!(yv, want, "element {i}");
    }
}

#[test]
fn fused_adam_equals_the_tensor_operations_it_replaces_bit_for_bit() {
    use fer_kernels::adam::AdamStep;
    // The same values on flex (the fused pass) and on flex with autodiff (burn's tensor
    // operations, the path every other backend takes), over three steps.
    let bits = |t: Tensor<2>| to_vec(t).into_iter().map(f32::to_bits).collect::<Vec<_>>();
    for decay in [None, Some(0.0), Some(0.05)] {
        let values = |seed: u32, scale: f32| {
            let v: Vec<f32> = (0..70_000u32)
                .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 2_001) as f32 / 1_000.0 - 1.0)
                .map(|v| v * scale)
                .collect();
            burn::tensor::TensorData::new(v, [70, 1_000])
        };
        let run = |device: &Device| {
            let mut param = Tensor::<2>::from_data(values(1, 0.1), device);
            let mut moments = None;
            for time in 1..=3 {
                let grad = Tensor::<2>::from_data(values(time as u32 + 1, 0.01), device);
                let step = AdamStep {
                    beta_1: 0.9,
                    beta_2: 0.999,
                    epsilon: 1e-7,
                    lr: 1e-3 * f64::from(time),
                    time,
                    decoupled_decay: decay,
                };
                let (p, m, v) = fer_kernels::adam(param, grad, moments, &step);
                (param, moments) = (p, Some((m, v)));
            }
            let (m, v) = moments.expect("moments after three steps");
            (bits(param), bits(m), bits(v))
        };
        let (fused, plain) = (run(&Device::flex()), run(&Device::flex().autodiff()));
        // The step moved the weights (a kernel that did nothing would differ from the plain path,
        // but say so plainly).
        assert_ne!(fused.0, bits(Tensor::<2>::from_data(values(1, 0.1), &Device::flex())), "{decay:?}");
        assert_eq!(fused, plain, "{decay:?}");
    }
}
