//! Optional recording of intermediate tensors during a forward pass.
//!
//! Parity tests compare every layer's state with the reference's, and a user debugging a run
//! can dump the same tensors. Recording only keeps references to tensors the forward computes
//! anyway; with no trace, nothing is recorded.

use std::collections::{BTreeMap, BTreeSet};

use candle_core::Tensor;

/// Intermediate tensors by name, using the fixtures' names without the `mid.` prefix:
/// `adapter_out`, `rope`, `layer_{i}`, `attn_out_{i}`, `mlp_out_{i}`, `model_out`, and for
/// the detail layers `l{i}.q_normed`, `l{i}.k_normed`, `l{i}.q_rope`, `l{i}.k_rope`,
/// `l{i}.attn_q`, `l{i}.attn_k`, `l{i}.attn_v`, `l{i}.attn_core`.
#[derive(Debug, Default)]
pub struct Trace {
    detail_layers: BTreeSet<usize>,
    /// The recorded tensors.
    pub tensors: BTreeMap<String, Tensor>,
}

impl Trace {
    /// A trace that records per-layer states, plus per-head details for `detail_layers`.
    pub fn new(detail_layers: impl IntoIterator<Item = usize>) -> Self {
        Self {
            detail_layers: detail_layers.into_iter().collect(),
            tensors: BTreeMap::new(),
        }
    }

    /// Whether per-head details of layer `i` are wanted.
    pub fn wants_detail(&self, i: usize) -> bool {
        self.detail_layers.contains(&i)
    }

    /// Stores `t` under `name`.
    pub fn record(&mut self, name: impl Into<String>, t: &Tensor) {
        self.tensors.insert(name.into(), t.clone());
    }
}

/// Records into an optional trace.
pub(crate) fn record(trace: &mut Option<&mut Trace>, name: impl FnOnce() -> String, t: &Tensor) {
    if let Some(trace) = trace.as_deref_mut() {
        trace.record(name(), t);
    }
}
