//! An exponential moving average of a model's weights (and BatchNorm running statistics).
//!
//! Mid-run, with the learning rate still high, the averaged weights score several points above the
//! weights being trained; that is what makes an early stop worth taking. The average lives in
//! host memory as one flat `f32` vector in the model's visiting order, so updating it is a single
//! pass, checkpointing it is a byte copy, and it is bit-for-bit reproducible.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use fer_model::FerModel;

/// The averaged weights and how many updates built them.
#[derive(Clone, Debug, PartialEq)]
pub struct Ema {
    decay: f64,
    weights: Vec<f32>,
    updates: u64,
}

/// `average = d * average + (1 - d) * parameter`, parameter by parameter in visiting order.
struct Fold<'a> {
    average: &'a mut [f32],
    at: usize,
    decay: f32,
}

impl ModuleVisitor for Fold<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data().convert::<f32>();
        let values = data.as_slice::<f32>().unwrap_or_default();
        let end = self.at + values.len();
        if let Some(average) = self.average.get_mut(self.at..end) {
            for (a, x) in average.iter_mut().zip(values) {
                *a = self.decay * *a + (1.0 - self.decay) * *x;
            }
        }
        self.at = end;
    }
}

/// A model's parameters and buffers, flattened in visiting order.
pub use fer_model::flatten;

impl Ema {
    /// Starts the average at the model's current weights.
    pub fn new(decay: f64, model: &FerModel) -> Ema {
        Ema { decay, weights: flatten(model), updates: 0 }
    }

    /// The decay used for the next update: the configured one, but shorter while few updates
    /// exist, so early averages are not dominated by the random initial weights.
    pub fn effective_decay(&self) -> f64 {
        let warm = (1.0 + self.updates as f64) / (10.0 + self.updates as f64);
        self.decay.min(warm)
    }

    /// `average = d * average + (1 - d) * weights`.
    pub fn update(&mut self, model: &FerModel) {
        // Fold each parameter into the average as it is visited: no 16 MB copy of the model per step.
        let d = self.effective_decay() as f32;
        let mut fold = Fold { average: &mut self.weights, at: 0, decay: d };
        model.visit(&mut fold);
        if fold.at != self.weights.len() {
            self.weights = flatten(model);
        }
        self.updates += 1;
    }

    pub fn update_from(&mut self, current: &[f32]) {
        let d = self.effective_decay() as f32;
        if current.len() != self.weights.len() {
            self.weights = current.to_vec();
        } else {
            for (a, x) in self.weights.iter_mut().zip(current) {
                *a = d * *a + (1.0 - d) * *x;
            }
        }
        self.updates += 1;
    }

    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// `template` (any model of the same architecture) carrying the averaged weights.
    pub fn apply(&self, template: FerModel) -> FerModel {
        // An average always comes from a model of the same architecture; a template of another
        // one keeps its own weights, as the mapper did before.
        match fer_model::with_values(template.clone(), &self.weights) {
            Ok(model) => model,
            Err(_) => template,
        }
    }

    /// `decay`, update count, then the weights, little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 4 * self.weights.len());
        out.extend_from_slice(&self.decay.to_le_bytes());
        out.extend_from_slice(&self.updates.to_le_bytes());
        for w in &self.weights {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// The inverse of [`Ema::to_bytes`]; `None` when the bytes are not a whole average of
    /// `expected` weights.
    pub fn from_bytes(bytes: &[u8], expected: usize) -> Option<Ema> {
        if bytes.len() != 16 + 4 * expected {
            return None;
        }
        let decay = f64::from_le_bytes(bytes[0..8].try_into().ok()?);
        let updates = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
        let weights = bytes[16..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Some(Ema { decay, weights, updates })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_matches_a_hand_computation() {
        let mut ema = Ema { decay: 0.9, weights: vec![1.0, -2.0], updates: 100 };
        ema.update_from(&[3.0, 2.0]);
        // d = min(0.9, 101/110) = 0.9: 0.9*1 + 0.1*3 = 1.2; 0.9*-2 + 0.1*2 = -1.6.
        assert!((ema.weights[0] - 1.2).abs() < 1e-6 && (ema.weights[1] + 1.6).abs() < 1e-6);
        assert_eq!(ema.updates(), 101);

        // Warm-up: the first update uses d = 1/10, so the new weights dominate.
        let mut fresh = Ema { decay: 0.999, weights: vec![0.0], updates: 0 };
        assert!((fresh.effective_decay() - 0.1).abs() < 1e-12);
        fresh.update_from(&[10.0]);
        assert!((fresh.weights[0] - 9.0).abs() < 1e-5);
    }

    #[test]
    fn bytes_round_trip_and_reject_wrong_sizes() {
        let ema = Ema { decay: 0.998, weights: vec![0.5, -1.25, 3.0], updates: 7 };
        let bytes = ema.to_bytes();
        assert_eq!(Ema::from_bytes(&bytes, 3), Some(ema));
        assert_eq!(Ema::from_bytes(&bytes, 4), None);
        assert_eq!(Ema::from_bytes(&bytes[..bytes.len() - 1], 3), None);
    }
}
