//! Interpretability for burn image classifiers.
//!
//! Everything here works on any model that implements [`NamedActivations`]: a forward pass that
//! names its layers and lets a caller look at (or substitute) each layer's output. Single-channel
//! input (`[batch, 1, h, w]`) is native; nothing assumes fer's own CNN.

mod activations;

pub use activations::{NamedActivations, TapError, capture};
