//! Deriving a model's full key/shape list from its config without allocating its weights.
//!
//! [`record_specs`] runs a model constructor against a `VarBuilder` whose backend records every
//! `(name, shape)` requested and hands back a zero-stride broadcast of one scalar, so building
//! even the 700M-parameter Wan VAE costs a few bytes. Constructors therefore must not compute on
//! their weights (derived weights such as the folded weight norm are computed on first use).

use std::sync::Mutex;

use cadence_core::{Result, TensorSpec};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

/// The tensors `build` requests, in request order.
pub fn record_specs<T>(build: impl FnOnce(VarBuilder<'_>) -> Result<T>) -> Result<Vec<TensorSpec>> {
    let recorder = Recorder::default();
    {
        let vb = VarBuilder::from_backend(Box::new(&recorder), DType::F32, Device::Cpu);
        build(vb)?;
    }
    let specs = recorder
        .specs
        .into_inner()
        .map_err(|_| cadence_core::Error::Config("spec recorder poisoned".into()))?;
    Ok(specs)
}

#[derive(Default)]
struct Recorder {
    specs: Mutex<Vec<TensorSpec>>,
}

impl SimpleBackend for &Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.specs
            .lock()
            .map_err(|_| candle_core::Error::Msg("spec recorder poisoned".into()))?
            .push(TensorSpec::new(name, s.dims()));
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("spec recorder: {name} requested without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}
