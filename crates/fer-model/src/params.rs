//! A model's parameters and buffers (BatchNorm running statistics included) as one flat `f32`
//! vector in the model's visiting order. The order is fixed by the architecture alone, so the
//! vector is a complete, deterministic description of the weights: the weight average and the
//! compact model file are both built on it.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};

use crate::FerModel;

struct Flatten<'a>(&'a mut Vec<f32>);

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data().convert::<f32>();
        self.0.extend_from_slice(data.as_slice::<f32>().unwrap_or_default());
    }
}

/// Counts the values without copying them.
struct Count(usize);

impl ModuleVisitor for Count {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0 += param.shape().num_elements();
    }
}

/// Replaces each parameter's values with the next slice of a flat vector.
struct Unflatten<'a> {
    values: &'a [f32],
    at: usize,
}

impl ModuleMapper for Unflatten<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.shape();
        let n = shape.num_elements();
        let end = (self.at + n).min(self.values.len());
        let slice = &self.values[self.at..end];
        self.at = end;
        let tensor = if slice.len() == n {
            let values = Tensor::from_data(TensorData::new(slice.to_vec(), shape), &tensor.device());
            // A trainable parameter stays one (on an autodiff device), so training can go on from it.
            if tensor.is_require_grad() { values.require_grad() } else { values }
        } else {
            tensor
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// The model's parameters and buffers, flattened in visiting order.
pub fn flatten(model: &FerModel) -> Vec<f32> {
    let mut out = Vec::with_capacity(value_count(model));
    model.visit(&mut Flatten(&mut out));
    out
}

/// How many values [`flatten`] returns for this model.
pub fn value_count(model: &FerModel) -> usize {
    let mut count = Count(0);
    model.visit(&mut count);
    count.0
}

/// `model` carrying `values` (as [`flatten`] lays them out). `Err` gives back how many values the
/// architecture needs when `values` has a different length.
pub fn with_values(model: FerModel, values: &[f32]) -> Result<FerModel, usize> {
    let needed = value_count(&model);
    if values.len() != needed {
        return Err(needed);
    }
    Ok(model.map(&mut Unflatten { values, at: 0 }))
}
