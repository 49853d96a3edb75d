//! The recipes' optimizer: burn's Adam or AdamW, computed by fer-kernels in one pass per
//! parameter (`fer_kernels::adam`) instead of burn's dozen whole-tensor operations.
//!
//! The values are burn's, bit for bit, and the state is burn's own type (`AdamWState`, whose
//! record is laid out as `AdamState`'s), so checkpoints written by either load in the other.

use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};
use fer_kernels::adam::AdamStep;

use crate::Recipe;

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

/// The recipe's optimizer: AdamW when it decays weights, Adam (the report's) otherwise.
pub(crate) fn optimizer(recipe: &Recipe) -> ModuleOptimizer {
    let a = &recipe.adam;
    let decoupled_decay = (recipe.weight_decay > 0.0).then_some(recipe.weight_decay);
    ModuleOptimizer::from(FusedAdam { beta_1: a.beta_1, beta_2: a.beta_2, epsilon: a.epsilon, decoupled_decay })
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
