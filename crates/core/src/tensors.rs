//! Models as trees of tensors, so placement code can move or measure any of them the same way:
//! a model (or a layer) lists its tensors in a fixed order and can be rebuilt from replacements
//! in that order. Moving a model to another device, parking its layers in host memory, or
//! counting the bytes it holds on a device are then one function each, written once, instead of
//! a `to_device` in every model file.

use candle_core::{Device, Tensor};

use crate::Result;

/// A value made of tensors (a model, a layer, a weight).
pub trait TensorTree: Sized {
    /// Calls `f` on every tensor, in a fixed order.
    fn for_each_tensor(&self, f: &mut dyn FnMut(&Tensor));

    /// The same value with every tensor replaced by `f(tensor)`, in the order of
    /// [`TensorTree::for_each_tensor`].
    fn map_tensors(&self, f: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<Self>;

    /// A copy on `device` (the value itself, cheaply cloned, where every tensor is there
    /// already).
    fn to_device(&self, device: &Device) -> Result<Self> {
        self.map_tensors(&mut |t| Ok(t.to_device(device)?))
    }

    /// Bytes of all its tensors' elements.
    fn tensor_bytes(&self) -> u64 {
        let mut bytes = 0u64;
        self.for_each_tensor(&mut |t| bytes += (t.elem_count() * t.dtype().size_in_bytes()) as u64);
        bytes
    }
}

impl TensorTree for Tensor {
    fn for_each_tensor(&self, f: &mut dyn FnMut(&Tensor)) {
        f(self)
    }

    fn map_tensors(&self, f: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<Self> {
        f(self)
    }
}

impl<T: TensorTree> TensorTree for Option<T> {
    fn for_each_tensor(&self, f: &mut dyn FnMut(&Tensor)) {
        if let Some(t) = self {
            t.for_each_tensor(f)
        }
    }

    fn map_tensors(&self, f: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<Self> {
        self.as_ref().map(|t| t.map_tensors(f)).transpose()
    }
}

impl<T: TensorTree> TensorTree for Vec<T> {
    fn for_each_tensor(&self, f: &mut dyn FnMut(&Tensor)) {
        for t in self {
            t.for_each_tensor(f)
        }
    }

    fn map_tensors(&self, f: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<Self> {
        self.iter().map(|t| t.map_tensors(f)).collect()
    }
}

impl<A: TensorTree, B: TensorTree> TensorTree for (A, B) {
    fn for_each_tensor(&self, f: &mut dyn FnMut(&Tensor)) {
        self.0.for_each_tensor(f);
        self.1.for_each_tensor(f);
    }

    fn map_tensors(&self, f: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok((self.0.map_tensors(f)?, self.1.map_tensors(f)?))
    }
}

/// Implements [`TensorTree`] for a struct from the list of its tensor-tree fields; every other
/// field is cloned. Keeps each model file's impl to one line per type.
#[macro_export]
macro_rules! tensor_tree {
    ($ty:ty { $($field:ident),* $(,)? }) => {
        impl $crate::tensors::TensorTree for $ty {
            fn for_each_tensor(&self, f: &mut dyn FnMut(&candle_core::Tensor)) {
                $( $crate::tensors::TensorTree::for_each_tensor(&self.$field, f); )*
            }

            fn map_tensors(
                &self,
                f: &mut dyn FnMut(&candle_core::Tensor) -> $crate::Result<candle_core::Tensor>,
            ) -> $crate::Result<Self> {
                let mut out = self.clone();
                $( out.$field = $crate::tensors::TensorTree::map_tensors(&self.$field, f)?; )*
                Ok(out)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[derive(Debug, Clone)]
    struct Layer {
        weight: Tensor,
        bias: Option<Tensor>,
        name: &'static str,
    }
    crate::tensor_tree!(Layer { weight, bias });

    #[test]
    fn a_struct_maps_and_measures_its_tensors_in_order() {
        let dev = Device::Cpu;
        let layer = Layer {
            weight: Tensor::ones((2, 3), DType::F32, &dev).unwrap(),
            bias: Some(Tensor::zeros(2, DType::BF16, &dev).unwrap()),
            name: "l0",
        };
        let layers = vec![layer.clone(), layer];
        assert_eq!(layers.tensor_bytes(), 2 * (6 * 4 + 2 * 2));
        let mut seen = Vec::new();
        let doubled = layers
            .map_tensors(&mut |t| {
                seen.push(t.dims().to_vec());
                Ok(t.to_dtype(DType::F32)?.affine(2.0, 0.0)?)
            })
            .unwrap();
        assert_eq!(seen, [vec![2, 3], vec![2], vec![2, 3], vec![2]]);
        assert_eq!(doubled[1].name, "l0");
        assert_eq!(
            doubled[1]
                .weight
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            12.0
        );
        assert_eq!(doubled.tensor_bytes(), 2 * (6 * 4 + 2 * 4));
    }
}
