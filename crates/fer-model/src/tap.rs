//! The hook every forward pass calls at each named layer: it hands the output to a callback
//! (interpretability taps, substitutes a layer's output) and can stop the pass there.

use burn::tensor::Tensor;

/// What a forward pass does at each named layer: hand the output to a callback, and/or stop
/// there (keeping the output) so that the layers after it are not computed.
/// What a tap does with a named layer output: look at it and return it (or a replacement).
pub(crate) type TapFn<'a> = &'a mut dyn FnMut(&str, Tensor<4>) -> Tensor<4>;

pub(crate) struct Tap<'a> {
    callback: Option<TapFn<'a>>,
    stop_after: Option<&'a str>,
    pub(crate) stopped: Option<Tensor<4>>,
}

impl<'a> Tap<'a> {
    pub(crate) fn new(callback: Option<TapFn<'a>>, stop_after: Option<&'a str>) -> Self {
        Tap { callback, stop_after, stopped: None }
    }

    /// The layer's output to continue with, or `None` when this is the stop layer.
    pub(crate) fn map(&mut self, name: &str, x: Tensor<4>) -> Option<Tensor<4>> {
        let x = match &mut self.callback {
            Some(f) => f(name, x),
            None => x,
        };
        if self.stop_after == Some(name) {
            self.stopped = Some(x);
            return None;
        }
        Some(x)
    }

    /// Whether nothing watches or stops the pass, so layers may be fused.
    pub(crate) fn is_plain(&self) -> bool {
        self.callback.is_none() && self.stop_after.is_none()
    }

    pub(crate) fn dense(&mut self, name: &str, x: Tensor<2>) -> Option<Tensor<2>> {
        if self.is_plain() {
            return Some(x);
        }
        let [batch, units] = x.dims();
        self.map(name, x.reshape([batch, units, 1, 1])).map(|x| x.reshape([batch, units]))
    }
}
