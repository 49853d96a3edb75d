//! Known-answer tests on small models whose right answers can be computed by hand.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData, activation::leaky_relu};
use fer_interpret::{
    AscentConfig, NamedActivations, Score, TapError, capture, class_index, grad_cam, gradient_ascent,
    integrated_gradients, saliency, smoothgrad,
};

const SIDE: usize = 8;

fn device() -> Device {
    Device::flex().autodiff()
}

/// logits = W^T flatten(x) + b: saliency must be W's column for the class.
struct Linear {
    weight: Tensor<2>, // [64, 3]
    bias: Tensor<1>,
}

impl NamedActivations for Linear {
    fn layer_names(&self) -> Vec<String> {
        vec!["logits".into()]
    }
    fn class_names(&self) -> Vec<String> {
        vec!["Left".into(), "Middle".into(), "Right".into()]
    }
    fn forward_tapped(&self, input: Tensor<4>, tap: &mut dyn FnMut(&str, Tensor<4>) -> Tensor<4>) -> Tensor<2> {
        let [b, _, _, _] = input.dims();
        let logits = input.flatten::<2>(1, 3).matmul(self.weight.clone()) + self.bias.clone().unsqueeze_dim(0);
        tap("logits", logits.reshape([b, 3, 1, 1])).reshape([b, 3])
    }
}

/// Zeroes the right half of the image, then conv (no bias) → LeakyReLU → global mean → dense.
/// Its logits depend only on the left half.
struct LeftConv {
    kernel: Tensor<4>, // [4, 1, 3, 3]
    dense: Tensor<2>,  // [4, 2]
}

fn left_mask(device: &Device) -> Tensor<4> {
    let mask: Vec<f32> = (0..SIDE * SIDE).map(|i| if i % SIDE < SIDE / 2 { 1.0 } else { 0.0 }).collect();
    Tensor::from_data(TensorData::new(mask, [1, 1, SIDE, SIDE]), device)
}

impl NamedActivations for LeftConv {
    fn layer_names(&self) -> Vec<String> {
        vec!["conv".into(), "act".into(), "logits".into()]
    }
    fn class_names(&self) -> Vec<String> {
        vec!["Yes".into(), "No".into()]
    }
    fn forward_tapped(&self, input: Tensor<4>, tap: &mut dyn FnMut(&str, Tensor<4>) -> Tensor<4>) -> Tensor<2> {
        let [b, _, _, _] = input.dims();
        let x = input.clone() * left_mask(&input.device());
        let x = tap("conv", conv2d(x, self.kernel.clone(), None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1)));
        let x = tap("act", leaky_relu(x, 0.1));
        let pooled = x.mean_dim(3).mean_dim(2).reshape([b, 4]);
        let logits = pooled.matmul(self.dense.clone());
        tap("logits", logits.reshape([b, 2, 1, 1])).reshape([b, 2])
    }
}

/// A linear model with standard-normal weights and no bias, from the device's current seed.
fn random_linear(device: &Device) -> Linear {
    Linear { weight: Tensor::random([64, 3], Distribution::Normal(0.0, 1.0), device), bias: Tensor::zeros([3], device) }
}

fn random(shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::random(shape, Distribution::Uniform(0.0, 1.0), device)
}

fn left_conv(device: &Device) -> LeftConv {
    device.seed(3);
    LeftConv {
        kernel: Tensor::random([4, 1, 3, 3], Distribution::Normal(0.0, 1.0), device),
        dense: Tensor::random([4, 2], Distribution::Normal(0.0, 1.0), device),
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

#[test]
fn saliency_of_a_linear_model_is_its_weight_column() {
    let device = device();
    device.seed(1);
    let model = random_linear(&device);
    let x = random([2, 1, SIDE, SIDE], &device);
    let map = saliency(&model, x, &[2, 0], Score::Logit);
    let map = values(map);
    let w = values(model.weight.clone());
    for (sample, class) in [(0, 2), (1, 0)] {
        for p in 0..64 {
            assert!((map[sample * 64 + p] - w[p * 3 + class]).abs() < 1e-5);
        }
    }
}

#[test]
fn captured_activations_equal_a_manual_forward() {
    let device = device();
    let model = left_conv(&device);
    let x = random([3, 1, SIDE, SIDE], &device);
    let (_, act) = capture(&model, x.clone(), "conv").unwrap();
    let manual =
        conv2d(x * left_mask(&device), model.kernel.clone(), None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
    let diff = (act - manual).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-6, "{diff}");
}

#[test]
fn grad_cam_lands_where_the_logit_looks() {
    let device = device();
    // Positive weights: every class has positive evidence for Grad-CAM to find.
    let model = left_conv(&device);
    let model = LeftConv { kernel: model.kernel.abs(), dense: model.dense.abs() };
    let x = random([2, 1, SIDE, SIDE], &device);
    for target in [0, 1] {
        let cam = values(grad_cam(&model, x.clone(), &[target, target], "act").unwrap());
        for sample in 0..2 {
            let map = &cam[sample * 64..(sample + 1) * 64];
            let left: f32 = map.iter().enumerate().filter(|(i, _)| i % SIDE < SIDE / 2).map(|(_, v)| v).sum();
            let right: f32 = map.iter().enumerate().filter(|(i, _)| i % SIDE > SIDE / 2).map(|(_, v)| v).sum();
            // Column SIDE/2 sees left pixels through the 3x3 kernel; columns beyond see none.
            assert!(right <= 1e-6 && left > 0.0, "target {target}, sample {sample}: left {left}, right {right}");
        }
    }
}

#[test]
fn integrated_gradients_are_complete_within_one_percent() {
    let device = device();
    let model = left_conv(&device);
    let x = random([2, 1, SIDE, SIDE], &device);
    let baseline = Tensor::zeros([2, 1, SIDE, SIDE], &device);
    for score in [Score::Logit, Score::Probability] {
        let ig = integrated_gradients(&model, x.clone(), baseline.clone(), &[0, 1], score, 64);
        for (k, e) in ig.relative_errors.iter().enumerate() {
            assert!(
                *e < 0.01,
                "{score:?} sample {k}: relative error {e} (sum {}, difference {})",
                ig.attribution_sums[k],
                ig.score_differences[k]
            );
        }
    }
}

#[test]
fn smoothgrad_averages_saliency_under_noise() {
    let device = device();
    device.seed(1);
    // For a linear model every noisy copy has the same gradient: SmoothGrad equals saliency.
    let model = random_linear(&device);
    let x = random([1, 1, SIDE, SIDE], &device);
    let a = saliency(&model, x.clone(), &[1], Score::Logit);
    let b = smoothgrad(&model, x, &[1], Score::Logit, 8, 0.2);
    assert!((a - b).abs().max().into_scalar::<f32>() < 1e-5);
}

#[test]
fn gradient_ascent_raises_each_filter_monotonically() {
    let device = device();
    let model = left_conv(&device);
    let filters = [0, 1, 2, 3];
    let config = AscentConfig { steps: 15, ..AscentConfig::default() };
    let result = gradient_ascent(&model, "act", &filters, [1, SIDE, SIDE], &config, &device).unwrap();
    assert_eq!(result.images.dims(), [4, 1, SIDE, SIDE]);
    assert_eq!(result.trace.len(), 16);
    for f in 0..filters.len() {
        for step in 1..result.trace.len() {
            assert!(
                result.trace[step][f] > result.trace[step - 1][f],
                "filter {f} fell at step {step}: {:?}",
                result.trace.iter().map(|t| t[f]).collect::<Vec<_>>()
            );
        }
    }
    // With regularisers on, it still runs and reports what it reached.
    let regularised = AscentConfig { l2_decay: 0.01, blur_every: 4, jitter: 1, tv_weight: 0.01, ..config };
    let r = gradient_ascent(&model, "act", &[0], [1, SIDE, SIDE], &regularised, &device).unwrap();
    assert!(r.activations[0].is_finite());
}

#[test]
fn bad_names_list_the_valid_ones() {
    let device = device();
    let model = left_conv(&device);
    let x = random([1, 1, SIDE, SIDE], &device);
    let e = capture(&model, x.clone(), "pool").unwrap_err();
    assert_eq!(e, TapError::UnknownLayer { name: "pool".into(), valid: "conv, act, logits".into() });
    assert!(grad_cam(&model, x, &[0], "fc9").unwrap_err().to_string().contains("valid layers: conv, act, logits"));
    assert_eq!(class_index(&model, "no").unwrap(), 1);
    assert!(class_index(&model, "maybe").unwrap_err().to_string().contains("valid classes: Yes, No"));
    let e = gradient_ascent(&model, "act", &[9], [1, SIDE, SIDE], &AscentConfig::default(), &device).unwrap_err();
    assert!(e.to_string().contains("has 4 filters"), "{e}");
}
