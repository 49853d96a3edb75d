//! The parameters some recipes treat apart from the rest: BatchNorm's scales (γ) and shifts
//! (β), and the first convolution's filters.
//!
//! Page's "How to train your ResNet" freezes the scales at 1; airbench moves the shifts at a
//! multiple of the rate and keeps its whitened first layer fixed. All act on the gradients
//! before the optimizer sees them, so the optimizer, its state and its checkpoints stay what
//! they are for every other recipe.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use fer_model::FerModel;

use crate::Recipe;

/// The ids of every BatchNorm scale and shift of a model, convolutional and dense blocks alike,
/// and of its first convolution's filters (none in the DNN).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamGroups {
    pub scales: Vec<ParamId>,
    pub shifts: Vec<ParamId>,
    pub first_conv: Option<ParamId>,
}

impl ParamGroups {
    pub fn of(model: &FerModel) -> ParamGroups {
        let mut finder = Finder { field: None, found: ParamGroups::default() };
        model.visit(&mut finder);
        finder.found
    }
}

/// Remembers the field being entered: burn's derive enters each field with its struct's name,
/// so a float parameter right after `("gamma", "Struct:BatchNorm")` is a BatchNorm scale.
struct Finder {
    field: Option<(String, String)>,
    found: ParamGroups,
}

impl ModuleVisitor for Finder {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.field = Some((name.to_string(), container_type.to_string()));
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match self.field.take() {
            Some((name, container)) if container == "Struct:BatchNorm" && name == "gamma" => {
                self.found.scales.push(param.id)
            }
            Some((name, container)) if container == "Struct:BatchNorm" && name == "beta" => {
                self.found.shifts.push(param.id)
            }
            Some((name, container)) if container == "Struct:Conv2d" && name == "weight" => {
                self.found.first_conv.get_or_insert(param.id);
            }
            _ => {}
        }
    }
}

/// The recipe's optimizer step with its parameter rules: frozen scales and a whitened first
/// layer get no update; shifts move at `bn_shift_lr_scale` times the rate, by a second
/// optimizer step over them alone (the optimizer keeps one state per parameter, so the split
/// changes no other value).
pub(crate) fn step_with_param_rules(
    recipe: &Recipe,
    groups: &ParamGroups,
    optim: &mut ModuleOptimizer,
    lr: f64,
    model: FerModel,
    mut grads: GradientsParams,
) -> FerModel {
    if recipe.freeze_bn_scales {
        for &id in &groups.scales {
            grads.remove::<1>(id);
        }
    }
    if recipe.whiten_first_layer
        && let Some(id) = groups.first_conv
    {
        grads.remove::<4>(id);
    }
    if recipe.bn_shift_lr_scale == 1.0 {
        return optim.step(lr, model, grads);
    }
    let mut shift_grads = GradientsParams::new();
    for &id in &groups.shifts {
        if let Some(grad) = grads.remove::<1>(id) {
            shift_grads.register(id, grad);
        }
    }
    let model = optim.step(lr, model, grads);
    optim.step(lr * recipe.bn_shift_lr_scale, model, shift_grads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunConfig;
    use crate::optim::optimizer;
    use burn::tensor::{Device, TensorData};

    fn device() -> Device {
        Device::flex().autodiff()
    }

    /// The tiny CNN without dropout, so two steps from the same weights see the same gradients.
    fn model() -> FerModel {
        let fer_model::ModelConfig::Cnn(cnn) = RunConfig::tiny_cnn() else { unreachable!("tiny_cnn is a cnn") };
        let cnn = cnn.with_conv_dropout(vec![0.0; 5]).with_dense_dropout(vec![0.0; 2]);
        FerModel::new(&fer_model::ModelConfig::Cnn(cnn), &device()).unwrap()
    }

    /// Every trained parameter's values by id (not BatchNorm's running statistics, which each
    /// forward pass of a model's clones updates in common).
    fn values(model: &FerModel) -> Vec<(ParamId, Vec<f32>)> {
        struct All(Vec<(ParamId, Vec<f32>)>, String);
        impl ModuleVisitor for All {
            fn enter_module(&mut self, name: &str, _container_type: &str) {
                self.1 = name.to_string();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if !self.1.starts_with("running_") {
                    self.0.push((param.id, param.val().into_data().convert::<f32>().try_to_vec().unwrap()));
                }
            }
        }
        let mut all = All(Vec::new(), String::new());
        model.visit(&mut all);
        assert!(all.0.len() < 40, "the running statistics are left out");
        all.0
    }

    /// One step of `recipe`'s optimizer and rules at rate 1e-3 on a fixed batch.
    fn stepped(recipe: &Recipe, start: &FerModel) -> FerModel {
        let device = device();
        let pixels: Vec<f32> = (0..4 * 48 * 48).map(|i| ((i * 37) % 255) as f32 / 255.0).collect();
        let images = Tensor::<4>::from_data(TensorData::new(pixels, [4, 1, 48, 48]), &device);
        let loss = start.forward(images).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), start);
        let groups = ParamGroups::of(start);
        step_with_param_rules(recipe, &groups, &mut optimizer(recipe), 1e-3, start.clone(), grads)
    }

    #[test]
    fn finds_each_batch_norm_scale_and_shift() {
        let model = model();
        let groups = ParamGroups::of(&model);
        // Five conv blocks and two dense blocks, one BatchNorm each.
        assert_eq!((groups.scales.len(), groups.shifts.len()), (7, 7));
        let by_id: std::collections::HashMap<ParamId, Vec<f32>> = values(&model).into_iter().collect();
        for id in &groups.scales {
            assert!(by_id[id].iter().all(|&v| v == 1.0), "a scale starts at one");
        }
        for id in &groups.shifts {
            assert!(by_id[id].iter().all(|&v| v == 0.0), "a shift starts at zero");
        }
        assert!(by_id.len() > 14, "the convolutions and dense layers are not BatchNorm's");
    }

    /// One step with `recipe` leaves the parameters `frozen` picks where they started, and moves
    /// every other one exactly as the fast recipe without the rule does.
    fn only_frozen_stay(recipe: Recipe, frozen: impl Fn(&ParamGroups, ParamId) -> bool) {
        let start = model();
        let groups = ParamGroups::of(&start);
        let plain = values(&stepped(&Recipe::fast_cnn(), &start));
        let ruled = values(&stepped(&recipe, &start));
        let before = values(&start);
        let mut stayed = 0;
        for (((id, b), (_, p)), (_, r)) in before.iter().zip(&plain).zip(&ruled) {
            if frozen(&groups, *id) {
                assert_eq!(r, b, "a frozen parameter moved");
                assert_ne!(p, b, "without the rule it moves");
                stayed += 1;
            } else {
                assert_eq!(r, p, "a parameter the rule leaves alone changed");
            }
        }
        assert!(stayed > 0, "the rule froze nothing");
    }

    #[test]
    fn frozen_scales_stay_and_everything_else_moves_as_without_the_rule() {
        let recipe = Recipe { freeze_bn_scales: true, ..Recipe::fast_cnn() };
        only_frozen_stay(recipe, |groups, id| groups.scales.contains(&id));
    }

    #[test]
    fn a_whitened_first_layer_stays_and_everything_else_moves_as_without_the_rule() {
        let start = model();
        let first = ParamGroups::of(&start).first_conv.expect("the CNN has a first convolution");
        assert_eq!(values(&start)[0].0, first, "the first parameter visited is the first convolution's filters");
        let recipe = Recipe { whiten_first_layer: true, ..Recipe::fast_cnn() };
        only_frozen_stay(recipe, |groups, id| groups.first_conv == Some(id));
    }

    #[test]
    fn shifts_move_at_their_multiple_of_the_rate() {
        let start = model();
        let groups = ParamGroups::of(&start);
        let before = values(&start);
        let plain = values(&stepped(&Recipe::fast_cnn(), &start));
        let scaled = values(&stepped(&Recipe { bn_shift_lr_scale: 4.0, ..Recipe::fast_cnn() }, &start));
        let mut compared = 0;
        for (((id, b), (_, p)), (_, s)) in before.iter().zip(&plain).zip(&scaled) {
            if !groups.shifts.contains(id) {
                assert_eq!(s, p, "only the shifts' rate changes");
                continue;
            }
            for ((b, p), s) in b.iter().zip(p).zip(s) {
                // Adam's first step is linear in the rate; AdamW's decay of a zero shift is zero.
                let (dp, ds) = (p - b, s - b);
                assert!((ds - 4.0 * dp).abs() <= 1e-6 + 1e-4 * dp.abs(), "{ds} against 4 x {dp}");
                compared += usize::from(dp != 0.0);
            }
        }
        assert!(compared > 0, "some shift must move");
    }
}
