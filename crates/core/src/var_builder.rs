//! Loading models through candle-nn's `VarBuilder`, the one idiom every Cadence model follows.
//!
//! A model states each tensor once, in its constructor: `vb.get(shape, name)`. Two backends
//! serve those calls:
//! * [`var_builder`] loads from any [`WeightSource`] (checkpoints, the codecs' state dicts,
//!   generated weights) and refuses a stored shape that differs from the requested one;
//! * [`record_specs`] records every `(name, shape)` and hands back a zero-stride broadcast of one
//!   scalar, so the full key/shape list of even a 9B model comes from its config for a few bytes;
//!   it declines optional tensors (`contains_tensor` is false).
//!   Constructors therefore must not compute on large weights (derived weights are computed on
//!   first use); a per-channel vector is fine.
//!
//! A loader verifies the source against [`record_specs`]'s list first
//! ([`WeightSource::verify`]: every missing, unexpected, mis-shaped and mis-typed key named),
//! then builds the model through [`var_builder`].

use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::{Result, TensorSpec, WeightSource};

/// A `VarBuilder` that loads each tensor from `source` on request, converted to the requested
/// dtype (the builder's, unless the call names one) on `device`.
pub fn var_builder<'a>(
    source: &'a dyn WeightSource,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'a> {
    VarBuilder::from_backend(Box::new(Loader(source)), dtype, device.clone())
}

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
        .map_err(|_| crate::Error::Config("spec recorder poisoned".into()))?;
    Ok(specs)
}

struct Loader<'a>(&'a dyn WeightSource);

impl SimpleBackend for Loader<'_> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!(
                "{}: tensor {name} has shape {:?}, the model expects {:?}",
                self.0.describe(),
                t.dims(),
                s.dims()
            );
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0
            .load(name, dtype, dev)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains(name)
    }
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

    /// Optional tensors (those a constructor asks about before taking) are declined, so the
    /// record is the list every source must hold; a loader states its optional ones itself.
    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}
