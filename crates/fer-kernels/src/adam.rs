//! Adam and AdamW in one pass over each parameter, computing exactly what burn's optimizers
//! compute, element for element.
//!
//! burn updates a parameter with about a dozen whole-tensor operations (moments, bias
//! corrections, square root, division, decay), each a pass over 4 M values for the report's
//! models. One fused pass reads the parameter, its gradient and both moments once and writes
//! the three updated tensors once. Every element goes through the same `f32` operations in the
//! same order as burn's chain (no fused multiply-add), so the result is bit for bit burn's and
//! checkpoints move freely between the two.

use rayon::prelude::*;

/// One step's constants. `lr` is burn's `f64` learning rate; `time` counts steps from 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub lr: f64,
    pub time: i32,
    /// `None`: burn's `Adam` (bias corrections folded into one factor); `Some(decay)`: burn's
    /// `AdamW` with decoupled weight decay `decay` (0 allowed).
    pub decoupled_decay: Option<f32>,
}

/// Values per parallel chunk: a few hundred KB of each of the four arrays.
const CHUNK: usize = 1 << 15;

/// `param`, `moment_1` and `moment_2` updated in place with `grad`. `first` is the step that
/// creates the moments (their contents are ignored then, as burn starts them from the gradient).
pub fn adam_update(
    param: &mut [f32],
    grad: &[f32],
    moment_1: &mut [f32],
    moment_2: &mut [f32],
    first: bool,
    step: &AdamStep,
) {
    let len = param.len();
    assert!(
        grad.len() == len && moment_1.len() == len && moment_2.len() == len,
        "adam: parameter, gradient and moments differ in length"
    );
    let s = *step;
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(moment_1.par_chunks_mut(CHUNK))
        .zip(moment_2.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| update_chunk(p, g, m, v, first, s));
}

multiversion! {
    fn update_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], first: bool, s: AdamStep) {
        let (f1, f2) = (1.0 - s.beta_1, 1.0 - s.beta_2);
        // burn's f64 scalars reach f32 tensors rounded to f32.
        let lr = s.lr as f32;
        let moments = |m: &mut f32, v: &mut f32, g: f32| {
            if first {
                *m = g * f1;
                *v = (g * g) * f2;
            } else {
                *m = *m * s.beta_1 + g * f1;
                *v = *v * s.beta_2 + (g * g) * f2;
            }
        };
        match s.decoupled_decay {
            None => {
                // burn's Adam: m · c / (√v + ε·√(1-β₂ᵗ)), c = √(1-β₂ᵗ) / (1-β₁ᵗ).
                let correction_2 = (1.0 - s.beta_2.powi(s.time)).sqrt();
                let factor = correction_2 / (1.0 - s.beta_1.powi(s.time));
                let eps = s.epsilon * correction_2;
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    moments(m, v, g);
                    let delta = (*m * factor) / (v.sqrt() + eps);
                    *p -= delta * lr;
                }
            }
            Some(decay) => {
                // burn's AdamW: (m / (1-β₁ᵗ)) / (√(v / (1-β₂ᵗ)) + ε), then decay and step.
                let (c1, c2) = (1.0 - s.beta_1.powi(s.time), 1.0 - s.beta_2.powi(s.time));
                let rate = s.lr * f64::from(decay);
                let keep = (1.0 - rate) as f32;
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    moments(m, v, g);
                    let delta = (*m / c1) / ((*v / c2).sqrt() + s.epsilon);
                    let decayed = if rate == 0.0 { *p } else { *p * keep };
                    *p = decayed - delta * lr;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The update written out the way burn's tensor chain computes it, one element at a time.
    fn by_hand(p: f32, g: f32, m: f32, v: f32, first: bool, s: &AdamStep) -> (f32, f32, f32) {
        let (m, v) = if first {
            (g * (1.0 - s.beta_1), (g * g) * (1.0 - s.beta_2))
        } else {
            (m * s.beta_1 + g * (1.0 - s.beta_1), v * s.beta_2 + (g * g) * (1.0 - s.beta_2))
        };
        let t = s.time;
        let p = match s.decoupled_decay {
            None => {
                let c2 = (1.0 - s.beta_2.powi(t)).sqrt();
                p - ((m * (c2 / (1.0 - s.beta_1.powi(t)))) / (v.sqrt() + s.epsilon * c2)) * s.lr as f32
            }
            Some(d) => {
                let delta = (m / (1.0 - s.beta_1.powi(t))) / ((v / (1.0 - s.beta_2.powi(t))).sqrt() + s.epsilon);
                let rate = s.lr * f64::from(d);
                (if rate == 0.0 { p } else { p * (1.0 - rate) as f32 }) - delta * s.lr as f32
            }
        };
        (p, m, v)
    }

    #[test]
    fn matches_the_update_computed_by_hand_bit_for_bit() {
        let n = 3 * CHUNK + 17;
        let value = |i: usize, k: u32| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(k) % 20_001) as f32 / 10_000.0 - 1.0
        };
        for decay in [None, Some(0.0), Some(0.05)] {
            for (first, time) in [(true, 1), (false, 2), (false, 1_000)] {
                let s = AdamStep { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, lr: 2e-3, time, decoupled_decay: decay };
                let (mut p, g): (Vec<f32>, Vec<f32>) =
                    ((0..n).map(|i| value(i, 1)).collect(), (0..n).map(|i| value(i, 2) * 0.01).collect());
                let mut m: Vec<f32> = (0..n).map(|i| value(i, 3) * 0.01).collect();
                let mut v: Vec<f32> = (0..n).map(|i| value(i, 4).abs() * 1e-4).collect();
                let want: Vec<_> = (0..n).map(|i| by_hand(p[i], g[i], m[i], v[i], first, &s)).collect();
                adam_update(&mut p, &g, &mut m, &mut v, first, &s);
                for (i, w) in want.iter().enumerate() {
                    assert_eq!(
                        (p[i].to_bits(), m[i].to_bits(), v[i].to_bits()),
                        (w.0.to_bits(), w.1.to_bits(), w.2.to_bits()),
                        "{decay:?} t={time} [{i}]"
                    );
                }
            }
        }
    }

    #[test]
    fn first_step_moves_each_weight_by_the_learning_rate_against_the_gradient_sign() {
        // Adam's first step is lr · g / (|g| + ε'): almost exactly lr, whatever the gradient's size.
        let s = AdamStep { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-8, lr: 1e-3, time: 1, decoupled_decay: None };
        let (mut p, g) = (vec![1.0f32, 1.0, 1.0], vec![0.5f32, -2e-3, 40.0]);
        let (mut m, mut v) = (vec![f32::NAN; 3], vec![f32::NAN; 3]);
        adam_update(&mut p, &g, &mut m, &mut v, true, &s);
        for (pi, gi) in p.iter().zip(&g) {
            assert!((pi - (1.0 - 1e-3 * gi.signum())).abs() < 1e-6, "{p:?}");
        }
        // The moments start from the gradient: (1-β₁)·g and (1-β₂)·g², to f32's rounding.
        assert!((m[0] / 0.05 - 1.0).abs() < 1e-5 && (v[0] / 0.00025 - 1.0).abs() < 1e-4, "{m:?} {v:?}");
    }
}
