//! Interpretability for burn image classifiers.
//!
//! Everything here works on any model that implements [`NamedActivations`]: a forward pass that
//! names its layers and lets a caller look at (or substitute) each layer's output. Single-channel
//! input (`[batch, 1, h, w]`) is native; nothing assumes fer's own CNN.
//!
//! Gradients need the model's parameters and the input on an autodiff device
//! (`device.autodiff()`), with the model in inference mode (burn's `Module::freeze`, so BatchNorm
//! uses its running statistics and dropout is off).

mod activations;
mod ascent;
mod attribution;
/// Colour maps, overlays and labelled grids (fer-report's drawing, re-exported).
#[cfg(feature = "png")]
pub mod image {
    pub use fer_report::draw::*;
}

pub use activations::{NamedActivations, TapError, capture, check_layer};
pub use ascent::{AscentConfig, AscentResult, gradient_ascent};
pub use attribution::{IntegratedGradients, Score, grad_cam, integrated_gradients, saliency, smoothgrad};

/// Resolves a class name (case-insensitive) or index to a logit index.
pub fn class_index(model: &dyn NamedActivations, name: &str) -> Result<usize, TapError> {
    let names = model.class_names();
    if let Ok(i) = name.parse::<usize>()
        && i < names.len()
    {
        return Ok(i);
    }
    names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .ok_or_else(|| TapError::UnknownClass { name: name.into(), valid: names.join(", ") })
}
