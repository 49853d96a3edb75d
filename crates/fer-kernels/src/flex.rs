//! The glue between [`crate::conv`] and burn: an extension trait implemented for `Flex` and for
//! `Autodiff<Flex>` (whose backward pass calls [`crate::conv::backward`]).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Dispatch, Flex, backend_extension};
use burn::tensor::{Shape, Tensor, TensorData};

use crate::conv::{self, ConvShape};

#[backend_extension(Flex, Autodiff)]
pub trait FerKernels: burn::backend::Backend {
    fn fer_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>, pad_h: usize, pad_w: usize) -> FloatTensor<Self>;
}

pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, padding: [usize; 2]) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FerKernels>::fer_conv2d(x.into_dispatch(), weight.into_dispatch(), bias.into_dispatch(), padding[0], padding[1]))
}

/// The tensor's elements in row-major order (copied only when the tensor is a strided view).
fn contiguous(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) if t.is_contiguous() => std::borrow::Cow::Borrowed(s),
        _ => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>().map(<[f32]>::to_vec).unwrap_or_default()),
    }
}

fn tensor(values: Vec<f32>, dims: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, Shape::from(dims.to_vec())))
}

fn shape_of(x: &FlexTensor, w: &FlexTensor, pad_h: usize, pad_w: usize) -> ConvShape {
    let xd = x.layout().shape().to_vec();
    let wd = w.layout().shape().to_vec();
    assert!(xd.len() == 4 && wd.len() == 4 && xd[1] == wd[1], "fer conv2d: input {xd:?} and weight {wd:?} do not fit");
    ConvShape { n: xd[0], cin: xd[1], h: xd[2], w: xd[3], cout: wd[0], kh: wd[2], kw: wd[3], pad_h, pad_w }
}

impl FerKernels for Flex {
    fn fer_conv2d(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, pad_h: usize, pad_w: usize) -> FlexTensor {
        let s = shape_of(&x, &weight, pad_h, pad_w);
        let y = conv::forward(&contiguous(&x), &contiguous(&weight), Some(&contiguous(&bias)), &s);
        tensor(y, &[s.n, s.cout, s.out_h(), s.out_w()])
    }
}

#[derive(Debug)]
struct Conv2dBackward;

impl Backward<Flex, 3> for Conv2dBackward {
    type State = (FlexTensor, FlexTensor, usize, usize);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy: FlexTensor = grads.consume::<Flex>(&ops.node);
        let (x, weight, pad_h, pad_w) = ops.state;
        let s = shape_of(&x, &weight, pad_h, pad_w);
        let g = conv::backward(&contiguous(&x), &contiguous(&weight), &contiguous(&dy), &s, node_x.is_some(), node_w.is_some(), node_b.is_some());
        if let (Some(node), Some(dx)) = (node_x, g.dx) {
            grads.register::<Flex>(node.id, tensor(dx, &[s.n, s.cin, s.h, s.w]));
        }
        if let (Some(node), Some(dw)) = (node_w, g.dw) {
            grads.register::<Flex>(node.id, tensor(dw, &[s.cout, s.cin, s.kh, s.kw]));
        }
        if let (Some(node), Some(db)) = (node_b, g.db) {
            grads.register::<Flex>(node.id, tensor(db, &[s.cout]));
        }
    }
}

impl<C: CheckpointStrategy> FerKernels for Autodiff<Flex, C> {
    fn fer_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>, pad_h: usize, pad_w: usize) -> FloatTensor<Self> {
        match Conv2dBackward.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, weight, bias) = (x.into_primitive(), weight.into_primitive(), bias.into_primitive());
                let y = Flex::fer_conv2d(x.clone(), weight.clone(), bias, pad_h, pad_w);
                prep.finish((x, weight, pad_h, pad_w), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::fer_conv2d(x.into_primitive(), weight.into_primitive(), bias.into_primitive(), pad_h, pad_w)),
        }
    }
}
