//! The recipes' optimizer: burn's Adam or AdamW, computed by fer-kernels in one pass per
//! parameter (`fer_kernels::adam`) instead of burn's dozen whole-tensor operations; or burn's own
//! SGD with Nesterov momentum (four whole-tensor operations, a few milliseconds of a step).
//!
//! Adam's values are burn's, bit for bit, and the state is burn's own type (`AdamWState`, whose
//! record is laid out as `AdamState`'s), so checkpoints written by either load in the other.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer, SgdConfig};
use burn::tensor::{Device, Tensor};
use fer_kernels::adam::AdamStep;

use crate::{OptimizerKind, Recipe};

#[derive(Clone, Debug)]
struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    /// `None`: Adam; `Some(decay)`: AdamW with decoupled weight decay.
    decoupled_decay: Option<f32>,
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (time, moments) = match state {
            Some(s) => (s.momentum.time + 1, Some((s.momentum.moment_1, s.momentum.moment_2))),
            None => (1, None),
        };
        let step = AdamStep {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            lr,
            time: i32::try_from(time).unwrap_or(i32::MAX),
            decoupled_decay: self.decoupled_decay,
        };
        let (param, m, v) = fer_kernels::adam(tensor, grad, moments, &step);
        (param, Some(AdamWState::new(AdaptiveMomentumState::new(time, m, v))))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

/// The recipe's optimizer: AdamW when it decays weights, Adam (the report's) otherwise; or SGD
/// with Nesterov momentum.
pub(crate) fn optimizer(recipe: &Recipe) -> ModuleOptimizer {
    match recipe.optimizer {
        OptimizerKind::Adam => {
            let a = &recipe.adam;
            let decoupled_decay = (recipe.weight_decay > 0.0).then_some(recipe.weight_decay);
            ModuleOptimizer::from(FusedAdam { beta_1: a.beta_1, beta_2: a.beta_2, epsilon: a.epsilon, decoupled_decay })
        }
        OptimizerKind::SgdNesterov => sgd_nesterov(recipe.weight_decay).init(),
    }
}

fn sgd_nesterov(weight_decay: f32) -> SgdConfig {
    let momentum =
        MomentumConfig::new().with_momentum(OptimizerKind::NESTEROV_MOMENTUM).with_dampening(0.0).with_nesterov(true);
    SgdConfig::new()
        .with_momentum(Some(momentum))
        .with_weight_decay((weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{AdamConfig, AdamWConfig, GradientsParams};
    use burn::tensor::TensorData;

    // Fixed values, not the device's random generator: tests run in parallel and share it.
    fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 2_001) as f32 / 1_000.0 - 1.0)
            .map(|v| v * scale)
            .collect()
    }

    fn device() -> Device {
        Device::flex().autodiff()
    }

    fn layer() -> Linear {
        let device = device();
        let mut layer = LinearConfig::new(40, 9).init(&device);
        layer.weight = Param::from_tensor(Tensor::from_data(TensorData::new(values(360, 1, 0.2), [40, 9]), &device));
        layer.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(values(9, 2, 0.1), [9]), &device)));
        layer
    }

    fn weights(model: &Linear) -> Vec<u32> {
        let mut w: Vec<f32> = model.weight.val().into_data().convert::<f32>().try_into_vec().unwrap();
        w.extend(model.bias.as_ref().unwrap().val().into_data().convert::<f32>().try_into_vec::<f32>().unwrap());
        w.into_iter().map(f32::to_bits).collect()
    }

    /// One step of `optim` on `model` with the loss of input number `step`.
    fn step(optim: &mut ModuleOptimizer, model: Linear, step: u32, lr: f64) -> Linear {
        let x = Tensor::<2>::from_data(TensorData::new(values(16 * 40, 10 + step, 1.0), [16, 40]), &device());
        let loss = model.forward(x).powi_scalar(2).mean().mul_scalar(1.0 + step as f32);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(lr, model, grads)
    }

    fn train(mut optim: ModuleOptimizer, steps: u32, lr: f64) -> (Linear, ModuleOptimizer) {
        let mut model = layer();
        for i in 0..steps {
            model = step(&mut optim, model, i, lr);
        }
        (model, optim)
    }

    fn recipe(weight_decay: f32) -> Recipe {
        Recipe { weight_decay, ..Recipe::report_cnn() }
    }

    /// Weights and velocity by hand, as PyTorch's `SGD(momentum=0.9, nesterov=True,
    /// weight_decay=wd)` defines them: g += wd·w; v = 0.9·v + g (v = g at the first step);
    /// w -= lr·(g + 0.9·v).
    fn nesterov_by_hand(mut w: Vec<f32>, grads: &[Vec<f32>], lr: f32, wd: f32) -> Vec<f32> {
        let mut v: Option<Vec<f32>> = None;
        for g in grads {
            let g: Vec<f32> = g.iter().zip(&w).map(|(g, w)| g + wd * w).collect();
            let vel: Vec<f32> = match &v {
                None => g.clone(),
                Some(v) => v.iter().zip(&g).map(|(v, g)| 0.9 * v + g).collect(),
            };
            w = w.iter().zip(g.iter().zip(&vel)).map(|(w, (g, v))| w - lr * (g + 0.9 * v)).collect();
            v = Some(vel);
        }
        w
    }

    #[test]
    fn sgd_nesterov_follows_the_textbook_update() {
        // A loss whose gradient is known: sum(w · c) has gradient c whatever w is.
        let device = device();
        let start = values(12, 3, 0.5);
        let coefficients: Vec<Vec<f32>> = (0..3).map(|i| values(12, 20 + i, 1.0)).collect();
        let mut layer = LinearConfig::new(3, 4).with_bias(false).init(&device);
        layer.weight = Param::from_tensor(Tensor::from_data(TensorData::new(start.clone(), [3, 4]), &device));
        let sgd = Recipe { optimizer: OptimizerKind::SgdNesterov, weight_decay: 0.01, ..Recipe::report_cnn() };
        let mut optim = optimizer(&sgd);
        for c in &coefficients {
            let c = Tensor::<2>::from_data(TensorData::new(c.clone(), [3, 4]), &device);
            let loss = (layer.weight.val() * c).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            layer = optim.step(0.1, layer, grads);
        }
        let got: Vec<f32> = layer.weight.val().into_data().convert::<f32>().try_into_vec().unwrap();
        let want = nesterov_by_hand(start, &coefficients, 0.1, 0.01);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{got:?} against {want:?}");
        }
        // Momentum carries over: plain SGD's three steps would land elsewhere.
        let plain: f32 = coefficients.iter().map(|c| c[0]).sum::<f32>() * 0.1;
        assert!((want[0] - (values(12, 3, 0.5)[0] - plain)).abs() > 1e-3);
    }

    #[test]
    fn equals_burns_adam_and_adamw_bit_for_bit() {
        let a = Recipe::report_cnn().adam;
        let burn_adam = AdamConfig::new().with_beta_1(a.beta_1).with_beta_2(a.beta_2).with_epsilon(a.epsilon).init();
        let burn_adamw = AdamWConfig::new()
            .with_beta_1(a.beta_1)
            .with_beta_2(a.beta_2)
            .with_epsilon(a.epsilon)
            .with_weight_decay(0.05)
            .init();
        for (name, theirs, ours) in
            [("adam", burn_adam, optimizer(&recipe(0.0))), ("adamw", burn_adamw, optimizer(&recipe(0.05)))]
        {
            let want = weights(&train(theirs, 5, 2e-3).0);
            let got = weights(&train(ours, 5, 2e-3).0);
            assert_eq!(want.len(), 40 * 9 + 9);
            assert_ne!(got, weights(&layer()), "{name}: the weights must move");
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn state_written_by_burns_adam_continues_here_as_in_burn() {
        let a = Recipe::report_cnn().adam;
        let burn_adam = || AdamConfig::new().with_beta_1(a.beta_1).with_beta_2(a.beta_2).with_epsilon(a.epsilon).init();
        let (model, after_three) = train(burn_adam(), 3, 1e-3);
        let bytes = after_three.into_bytes().unwrap();
        // One more step of the same model from the restored state, with each optimizer.
        let fourth = |mut optim: ModuleOptimizer| weights(&step(&mut optim, model.clone(), 3, 1e-3));
        let theirs = fourth(burn_adam().from_bytes(bytes.clone()).unwrap());
        assert_eq!(fourth(optimizer(&recipe(0.0)).from_bytes(bytes).unwrap()), theirs);
        // The restored moments matter: starting over from no state gives other weights.
        assert_ne!(fourth(optimizer(&recipe(0.0))), theirs);
    }
}
