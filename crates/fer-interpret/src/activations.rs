use burn::tensor::Tensor;

/// A classifier whose forward pass names its layers.
///
/// `forward_tapped` calls `tap(name, output)` with the output of every named layer, in order,
/// and continues the forward pass with whatever `tap` returns. Returning the argument unchanged
/// observes; returning `output.detach().require_grad()` makes the layer a leaf whose gradient
/// the caller can read (Grad-CAM). Outputs of dense layers are passed as `[batch, units, 1, 1]`.
pub trait NamedActivations {
    /// Layer names in forward order.
    fn layer_names(&self) -> Vec<String>;

    /// Class names, in logit order.
    fn class_names(&self) -> Vec<String>;

    /// Runs the model on `input` (`[batch, channels, h, w]`) and returns the logits
    /// (`[batch, classes]`).
    fn forward_tapped(&self, input: Tensor<4>, tap: &mut dyn FnMut(&str, Tensor<4>) -> Tensor<4>) -> Tensor<2>;

    /// The output of `layer` alone. The default runs the whole tapped pass; models override it
    /// to skip the layers after `layer` (gradient ascent calls it every step).
    fn forward_to(&self, input: Tensor<4>, layer: &str) -> Result<Tensor<4>, TapError> {
        let mut captured = None;
        self.forward_tapped(input, &mut |name, x| {
            if name == layer {
                captured = Some(x.clone());
            }
            x
        });
        captured.ok_or_else(|| TapError::UnknownLayer { name: layer.into(), valid: self.layer_names().join(", ") })
    }
}

/// A layer or class name that the model does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapError {
    #[error("unknown layer {name:?}; valid layers: {valid}")]
    UnknownLayer { name: String, valid: String },
    #[error("unknown class {name:?}; valid classes: {valid}")]
    UnknownClass { name: String, valid: String },
    #[error("layer {layer:?} has {channels} filters (0..{channels}); filter {filter} is out of range")]
    FilterOutOfRange { layer: String, filter: usize, channels: usize },
}

impl TapError {
    pub fn unknown_layer(model: &dyn NamedActivations, name: &str) -> Self {
        TapError::UnknownLayer { name: name.into(), valid: model.layer_names().join(", ") }
    }
}

/// Checks `layer` exists in `model`.
pub fn check_layer(model: &dyn NamedActivations, layer: &str) -> Result<(), TapError> {
    if model.layer_names().iter().any(|n| n == layer) { Ok(()) } else { Err(TapError::unknown_layer(model, layer)) }
}

/// Runs `model` on `input` and returns the logits and the output of `layer`.
pub fn capture(
    model: &dyn NamedActivations,
    input: Tensor<4>,
    layer: &str,
) -> Result<(Tensor<2>, Tensor<4>), TapError> {
    check_layer(model, layer)?;
    let mut captured = None;
    let logits = model.forward_tapped(input, &mut |name, x| {
        if name == layer {
            captured = Some(x.clone());
        }
        x
    });
    let activation = captured.ok_or_else(|| TapError::unknown_layer(model, layer))?;
    Ok((logits, activation))
}
