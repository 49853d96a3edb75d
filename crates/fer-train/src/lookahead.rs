//! Lookahead toward a short weight average, as Keller Jordan's airbench trains: every
//! [`LOOKAHEAD_EVERY`] steps the trained weights are folded into an average, and the model
//! carries on from the average. The average's decay rises with the cube of the run's progress
//! (to 0.95⁵ at the end), so it leaves the early steps alone and steadies the annealing ones.
//!
//! Only trainable parameters fold: BatchNorm's running statistics are averages already, and burn
//! keeps their latest updates outside the value a mapper sees until it syncs them.
//!
//! The model and the average are equal right after each fold, and folds fall on every epoch's
//! last step, so the state needs no room in the checkpoint: a run only stops on a fold (the loop
//! defers a requested stop by at most `LOOKAHEAD_EVERY - 1` steps) and a resumed run starts its
//! average at the model's weights, exactly where the uninterrupted run stands.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use fer_model::FerModel;

/// Steps between folds (airbench's).
pub const LOOKAHEAD_EVERY: usize = 5;

/// The average the model is pulled back to, flat in the model's visiting order.
pub(crate) struct Lookahead {
    average: Vec<f32>,
}

impl Lookahead {
    /// Starts the average at the model's weights (a fresh run, or a resumed one: see the module).
    pub(crate) fn new(model: &FerModel) -> Lookahead {
        let mut average = Vec::new();
        model.visit(&mut Trainable(&mut average));
        Lookahead { average }
    }

    /// Whether the step that just finished (`done` steps into the run, `epoch_done` steps into an
    /// epoch of `epoch_steps`) folds.
    pub(crate) fn folds_after(done: usize, epoch_done: usize, epoch_steps: usize) -> bool {
        done.is_multiple_of(LOOKAHEAD_EVERY) || epoch_done == epoch_steps
    }

    /// The average's decay at a fold `done` of `total` steps into the run: 0.95⁵ · (done/total)³.
    pub(crate) fn decay_at(done: usize, total: usize) -> f32 {
        let progress = (done as f64 / total.max(1) as f64).min(1.0);
        (0.95f64.powi(LOOKAHEAD_EVERY as i32) * progress.powi(3)) as f32
    }

    /// `average = d · average + (1 - d) · weights`, then the model takes the average's values
    /// (parameter ids and gradient tracking kept, so the optimizer's state still applies).
    pub(crate) fn fold(&mut self, model: FerModel, decay: f32) -> FerModel {
        let mut fold = Fold { average: &mut self.average, at: 0, decay };
        let folded = model.map(&mut fold);
        debug_assert_eq!(fold.at, self.average.len(), "the average and the model differ in size");
        folded
    }
}

/// The trainable parameters' values, in visiting order.
struct Trainable<'a>(&'a mut Vec<f32>);

impl ModuleVisitor for Trainable<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        if tensor.is_require_grad() {
            self.0.extend_from_slice(tensor.into_data().convert::<f32>().as_slice::<f32>().unwrap_or_default());
        }
    }
}

struct Fold<'a> {
    average: &'a mut [f32],
    at: usize,
    decay: f32,
}

impl ModuleMapper for Fold<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        if !tensor.is_require_grad() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let shape = tensor.shape();
        let end = self.at + shape.num_elements();
        let Some(average) = self.average.get_mut(self.at..end) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        self.at = end;
        let data = tensor.to_data().convert::<f32>();
        let (d, values) = (self.decay, data.as_slice::<f32>().unwrap_or_default());
        for (a, x) in average.iter_mut().zip(values) {
            *a = d * *a + (1.0 - d) * *x;
        }
        let mut folded = Tensor::from_data(TensorData::new(average.to_vec(), shape), &tensor.device());
        if tensor.is_require_grad() {
            folded = folded.require_grad();
        }
        Param::from_mapped_value(id, folded, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn decay_rises_with_the_cube_of_progress_and_folds_fall_on_epoch_ends() {
        assert_eq!(Lookahead::decay_at(0, 100), 0.0);
        assert!((Lookahead::decay_at(50, 100) - 0.773_781 * 0.125).abs() < 1e-6);
        assert!((Lookahead::decay_at(100, 100) - 0.773_781).abs() < 1e-6);
        assert!(Lookahead::folds_after(5, 5, 9) && Lookahead::folds_after(10, 1, 9));
        assert!(Lookahead::folds_after(9, 9, 9), "an epoch's last step folds");
        assert!(!Lookahead::folds_after(7, 7, 9));
    }

    #[test]
    fn a_fold_moves_the_trainable_weights_to_the_updated_average_and_keeps_them_trainable() {
        let device = Device::flex().autodiff();
        let start = fer_model::FerModel::new(&crate::RunConfig::tiny_cnn(), &device).unwrap();
        let mut lookahead = Lookahead::new(&start);
        let before = lookahead.average.clone();
        assert!(before.len() < fer_model::value_count(&start), "running statistics are not folded");
        // Every value moves by +1; a fold with decay 0.75 keeps a quarter of the move.
        let all = fer_model::flatten(&start);
        let moved = fer_model::with_values(start, &all.iter().map(|v| v + 1.0).collect::<Vec<_>>()).unwrap();
        let folded = lookahead.fold(moved, 0.75);
        let after = Lookahead::new(&folded).average;
        assert_eq!(after.len(), before.len());
        for (a, b) in after.iter().zip(&before) {
            assert!((a - (b + 0.25)).abs() < 1e-5, "{a} against {b} + 0.25");
        }
        assert_eq!(lookahead.average, after, "model and average are equal after a fold");
    }
}
