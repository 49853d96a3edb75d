//! Which input pixels drive a class score.

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Distribution, Int, Tensor, TensorData, activation::softmax};

use crate::{NamedActivations, TapError, check_layer};

/// What "the class score" is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Score {
    /// The pre-softmax logit (the usual choice: it does not compete with other classes).
    #[default]
    Logit,
    /// The softmax probability.
    Probability,
}

/// Sum over the batch of each sample's score for its own target class, and the per-sample scores.
fn target_scores(logits: Tensor<2>, targets: &[usize], score: Score) -> (Tensor<1>, Tensor<2>) {
    let [batch, classes] = logits.dims();
    let values = match score {
        Score::Logit => logits,
        Score::Probability => softmax(logits, 1),
    };
    let device = values.device();
    let index: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    let index = Tensor::<2, Int>::from_data(TensorData::new(index, [batch, 1]), &device);
    let picked = values.gather(1, index); // [batch, 1]
    debug_assert!(targets.iter().all(|&t| t < classes));
    (picked.clone().sum(), picked)
}

/// Gradient of each sample's target-class score with respect to its input pixels (signed; take
/// `.abs()` for the classic saliency map). `input` is `[batch, channels, h, w]`.
pub fn saliency(model: &dyn NamedActivations, input: Tensor<4>, targets: &[usize], score: Score) -> Tensor<4> {
    let x = input.detach().require_grad();
    let logits = model.forward_tapped(x.clone(), &mut |_, a| a);
    let (total, _) = target_scores(logits, targets, score);
    let grads = total.backward();
    x.grad(&grads).map(|g| g.to_device(&x.device())).unwrap_or_else(|| x.zeros_like().detach())
}

/// SmoothGrad: saliency averaged over `samples` copies of the input with Gaussian noise of
/// standard deviation `sigma` (in input units; 0.1-0.2 of the input range is usual).
pub fn smoothgrad(
    model: &dyn NamedActivations,
    input: Tensor<4>,
    targets: &[usize],
    score: Score,
    samples: usize,
    sigma: f64,
) -> Tensor<4> {
    let mut total = input.zeros_like().detach();
    for _ in 0..samples.max(1) {
        let noise = input.random_like(Distribution::Normal(0.0, sigma));
        total = total + saliency(model, input.clone() + noise, targets, score).detach();
    }
    total / samples.max(1) as f32
}

/// Grad-CAM at `layer`: the layer's maps weighted by the spatial mean of the score's gradient,
/// rectified, upsampled (bilinear) to the input size and scaled to [0, 1] per sample.
pub fn grad_cam(
    model: &dyn NamedActivations,
    input: Tensor<4>,
    targets: &[usize],
    layer: &str,
) -> Result<Tensor<4>, TapError> {
    check_layer(model, layer)?;
    let [_, _, h, w] = input.dims();
    let mut leaf: Option<Tensor<4>> = None;
    let logits = model.forward_tapped(input.detach(), &mut |name, a| {
        if name == layer {
            let a = a.detach().require_grad();
            leaf = Some(a.clone());
            a
        } else {
            a
        }
    });
    let activation = leaf.ok_or_else(|| TapError::unknown_layer(model, layer))?;
    let (total, _) = target_scores(logits, targets, Score::Logit);
    let grads = total.backward();
    let gradient = activation.grad(&grads).unwrap_or_else(|| activation.zeros_like().detach());
    let activation = activation.detach();
    let weights = gradient.mean_dim(3).mean_dim(2); // [b, c, 1, 1]
    let cam = (activation * weights).sum_dim(1).clamp_min(0.0); // [b, 1, lh, lw]
    let cam = interpolate(cam, InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size([h, w]));
    let max = cam.clone().max_dim(3).max_dim(2).clamp_min(1e-12);
    Ok(cam / max)
}

/// Integrated gradients and how well they satisfy completeness.
#[derive(Debug)]
pub struct IntegratedGradients {
    /// Attributions, same shape as the input.
    pub attributions: Tensor<4>,
    /// Per sample: sum of attributions.
    pub attribution_sums: Vec<f32>,
    /// Per sample: score(input) - score(baseline).
    pub score_differences: Vec<f32>,
    /// Per sample: |sum - difference| / |difference|.
    pub relative_errors: Vec<f32>,
}

/// Integrated gradients from `baseline` (e.g. a black image) to `input` with `steps` midpoint
/// Riemann steps; completeness (sum ≈ score(x) − score(baseline)) is measured, not assumed.
pub fn integrated_gradients(
    model: &dyn NamedActivations,
    input: Tensor<4>,
    baseline: Tensor<4>,
    targets: &[usize],
    score: Score,
    steps: usize,
) -> IntegratedGradients {
    let steps = steps.max(1);
    let input = input.detach();
    let baseline = baseline.detach();
    let delta = input.clone() - baseline.clone();
    let mut total = input.zeros_like().detach();
    for k in 0..steps {
        let alpha = (k as f32 + 0.5) / steps as f32;
        let point = baseline.clone() + delta.clone() * alpha;
        total = total + saliency(model, point, targets, score).detach();
    }
    let attributions = total / steps as f32 * delta;
    let score_of = |x: Tensor<4>| -> Vec<f32> {
        let logits = model.forward_tapped(x, &mut |_, a| a);
        let (_, per_sample) = target_scores(logits, targets, score);
        per_sample.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
    };
    let differences: Vec<f32> = score_of(input).iter().zip(score_of(baseline)).map(|(a, b)| a - b).collect();
    let sums: Vec<f32> = attributions
        .clone()
        .flatten::<2>(1, 3)
        .sum_dim(1)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    let relative_errors = sums.iter().zip(&differences).map(|(s, d)| (s - d).abs() / d.abs().max(1e-12)).collect();
    IntegratedGradients { attributions, attribution_sums: sums, score_differences: differences, relative_errors }
}
