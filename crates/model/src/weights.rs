//! Checkpoint key names and shapes of the DiT, recorded from its loader.
//!
//! The names are the reference's `state_dict` keys, so the published checkpoints load as they
//! are. Each key and shape is stated once, where the model loads it ([`crate::dit`],
//! [`crate::layer`]); [`expected_tensors`] runs that loader against
//! [`record_specs`]'s recorder, so the list costs no weight memory, and the loader verifies a
//! checkpoint against it before reading a byte of weights.

use cadence_core::var_builder::record_specs;
use cadence_core::TensorSpec;
use cadence_kernels::fp8::scale_key;
use candle_core::DType;

use crate::config::DitConfig;
use crate::dit::{load_layers, Outer, LAYERS};
use crate::precision::LoadOptions;

/// Key of the rope frequency buffer (non-learned; recomputed when absent).
pub const ROPE_BANDS: &str = "adapter.rope.bands";

/// Stored types of a GEMM weight: a float, or e4m3 with its scale vector (an FP8 checkpoint).
pub const GEMM_DTYPES: &[DType] = &[
    DType::F16,
    DType::BF16,
    DType::F32,
    DType::F64,
    DType::F8E4M3,
];

/// Every tensor the model reads, with its shape, in checkpoint naming: what the dense loader
/// requests, plus the optional rope bands.
pub fn expected_tensors(c: &DitConfig) -> Vec<TensorSpec> {
    let dense = LoadOptions::dense(DType::F32);
    // The recorder serves every request and declines every optional tensor, so recording a
    // parsed (validated) config cannot fail: a failure is a bug in the loader.
    let mut specs = record_specs(|vb| {
        Outer::load(&vb, c)?;
        load_layers(&vb, c, &dense, drop)
    })
    .expect("recording the DiT's tensors cannot fail");
    specs.push(TensorSpec::optional(ROPE_BANDS, [c.rope_bands()]));
    specs
}

/// Whether `spec` is a GEMM weight of a transformer layer, `(experts·out, in)`: the tensors an
/// FP8 checkpoint stores in e4m3 with a per-row scale. Every matrix of a layer is one (its
/// other tensors are norm vectors).
pub fn is_gemm(spec: &TensorSpec) -> bool {
    spec.shape.len() == 2
        && spec
            .name
            .strip_prefix(LAYERS)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The GEMM weights of the transformer layers ([`is_gemm`]).
pub fn gemm_weights(c: &DitConfig) -> Vec<TensorSpec> {
    expected_tensors(c).into_iter().filter(is_gemm).collect()
}

/// Every tensor a checkpoint of this model may hold: [`expected_tensors`] (GEMM weights in a
/// float type or e4m3) plus, for each GEMM weight stored in FP8, its `(out,)` scale vector
/// (`<key>_scale`).
pub fn accepted_tensors(c: &DitConfig) -> Vec<TensorSpec> {
    let expected = expected_tensors(c);
    let scales: Vec<TensorSpec> = expected
        .iter()
        .filter(|s| is_gemm(s))
        .map(|s| TensorSpec::optional(scale_key(&s.name), [s.shape[0]]))
        .collect();
    expected
        .into_iter()
        .map(|s| {
            if is_gemm(&s) {
                s.stored_as(GEMM_DTYPES)
            } else {
                s
            }
        })
        .chain(scales)
        .collect()
}
