//! One optimisation step, the same value for `fer train`'s loop and `fer bench`, and the
//! precision a run trains at.

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};
use fer_model::FerModel;

use crate::optim::optimizer;
use crate::param_groups::{ParamGroups, step_with_param_rules};
use crate::recipe::Recipe;

/// One optimisation step exactly as [`crate::train`] runs it: forward, the recipe's loss, backward, the
/// recipe's optimizer at the given rate. `fer bench` times this same value, so the bench and a
/// run's history measure the same work.
pub struct TrainStep {
    pub(super) optim: ModuleOptimizer,
    loss_fn: CrossEntropyLoss,
    recipe: Recipe,
    /// Found at the first step, when the recipe has parameter rules (the ids never change).
    groups: Option<ParamGroups>,
}

/// What a step returns besides the updated model: the batch's mean loss and correct predictions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutput {
    pub loss: f32,
    pub correct: i64,
}

impl TrainStep {
    /// A fresh optimizer for `recipe`, on `device` (an autodiff device).
    pub fn new(recipe: &Recipe, device: &Device) -> Self {
        Self::with_optimizer(recipe, optimizer(recipe), device)
    }

    pub(crate) fn with_optimizer(recipe: &Recipe, optim: ModuleOptimizer, device: &Device) -> Self {
        TrainStep { optim, loss_fn: loss_function(recipe, device), recipe: recipe.clone(), groups: None }
    }

    /// Runs the step; a non-finite loss leaves the model unchanged and is returned as is, for the
    /// caller to stop on.
    pub fn run(
        &mut self,
        model: FerModel,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
        lr: f64,
    ) -> (FerModel, StepOutput) {
        let logits = model.forward(images);
        let loss = self.loss_fn.forward(logits.clone(), targets.clone());
        let loss_value = loss.clone().into_scalar::<f32>();
        if !loss_value.is_finite() {
            return (model, StepOutput { loss: loss_value, correct: 0 });
        }
        let correct = logits.argmax(1).squeeze_dim::<1>(1).equal(targets).int().sum().into_scalar::<i64>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = if self.recipe.has_param_rules() {
            let groups = self.groups.get_or_insert_with(|| ParamGroups::of(&model));
            step_with_param_rules(&self.recipe, groups, &mut self.optim, lr, model, grads)
        } else {
            self.optim.step(lr, model, grads)
        };
        (model, StepOutput { loss: loss_value, correct })
    }
}

/// The recipe's training loss: cross-entropy on logits, with label smoothing when asked.
pub fn loss_function(recipe: &Recipe, device: &Device) -> CrossEntropyLoss {
    let smoothing = (recipe.label_smoothing > 0.0).then_some(recipe.label_smoothing);
    CrossEntropyLossConfig::new().with_smoothing(smoothing).init(device)
}

/// The recipe's convolution precision for the length of a run (training and its validation),
/// the process's earlier setting restored afterwards, however the run ends.
pub(crate) struct PrecisionGuard(fer_kernels::Precision);

impl PrecisionGuard {
    pub(crate) fn set(precision: fer_kernels::Precision) -> PrecisionGuard {
        let before = fer_kernels::precision();
        fer_kernels::set_precision(precision);
        PrecisionGuard(before)
    }
}

impl Drop for PrecisionGuard {
    fn drop(&mut self) {
        fer_kernels::set_precision(self.0);
    }
}
