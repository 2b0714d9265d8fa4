//! Optional capture of the encoder's intermediate tensors, for parity checks and debugging.
//!
//! Names follow the sub-steps of a layer (`layer{i}.attn_norm`, `layer{i}.q_proj`, ...,
//! `layer{i}.out`) plus `embed_scaled`, `rope_cos`, `rope_sin` and `layer{i}.attn_mask`; see
//! [`crate::TextEncoder::forward_traced`]. A disabled trace records nothing and costs nothing.

use std::collections::BTreeMap;

use candle_core::Tensor;

/// Named intermediate tensors of one forward pass.
#[derive(Debug, Default)]
pub struct Trace {
    enabled: bool,
    tensors: BTreeMap<String, Tensor>,
}

impl Trace {
    /// A trace that records every intermediate.
    pub fn enabled() -> Self {
        Self {
            enabled: true,
            tensors: BTreeMap::new(),
        }
    }

    /// A trace that records nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// The tensor recorded under `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// Every recorded name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Records `t` as `name`, or as `layer{i}.name` when `layer` is given.
    pub(crate) fn record(&mut self, layer: Option<usize>, name: &str, t: &Tensor) {
        if self.enabled {
            let key = match layer {
                Some(i) => format!("layer{i}.{name}"),
                None => name.to_string(),
            };
            self.tensors.insert(key, t.clone());
        }
    }
}
