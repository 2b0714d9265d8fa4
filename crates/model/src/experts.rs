//! Weights that exist once per modality ("experts") in sandwich layers, and once in others.
//!
//! Experts are stacked along dim 0 in the order video, audio, text; each token uses its own
//! modality's expert. Tokens are grouped by modality, so dispatch runs each expert on its
//! contiguous span and concatenates the results in order.

use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};

use cadence_core::Result;
use cadence_kernels::norm::rms_norm;
use cadence_kernels::{linear, LinearWeight};

use crate::config::NORM_EPS;
use crate::packing::{Modality, ModalitySpans};
use crate::precision::{load_linear, LoadOptions};

/// Runs `f(rows, expert)` on each modality's span of `x` (dim 0) and concatenates the results.
/// With a single expert, `f` sees all rows at once.
fn per_expert(
    x: &Tensor,
    spans: &ModalitySpans,
    experts: usize,
    f: impl Fn(&Tensor, usize) -> Result<Tensor>,
) -> Result<Tensor> {
    if experts == 1 {
        return f(x, 0);
    }
    let mut parts = Vec::with_capacity(experts);
    for m in Modality::ALL {
        let range = spans.range(m);
        if !range.is_empty() {
            parts.push(f(&x.narrow(0, range.start, range.len())?, m.id())?);
        }
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// A bias-free linear layer with one weight block per expert: `(experts·out, in)`, dense or
/// FP8 ([`crate::precision::WeightFormat`]); the product runs through the op boundary's [`linear`].
#[derive(Debug, Clone)]
pub struct ExpertLinear {
    weight: LinearWeight,
    out_features: usize,
    experts: usize,
}
cadence_core::tensor_tree!(ExpertLinear { weight });

impl ExpertLinear {
    /// Loads `weight` (`(experts·out_features, in_features)`) under `vb`, dense in the compute
    /// dtype or FP8, as `options` say.
    pub fn load(
        vb: &VarBuilder,
        (out_features, in_features): (usize, usize),
        experts: usize,
        options: &LoadOptions,
    ) -> Result<Self> {
        let shape = (experts * out_features, in_features);
        let weight = load_linear(vb, shape, options.compute, options.weights)?;
        Ok(Self {
            weight,
            out_features,
            experts,
        })
    }

    /// `x · Wₑᵀ` per expert, `x` `(L, in)` in the compute dtype; the product accumulates in f32
    /// and is returned in the compute dtype (rounded once, as the reference's bf16 GEMM). With
    /// FP8 weights each expert's rows are quantised per token on the way in.
    pub fn forward(&self, x: &Tensor, spans: &ModalitySpans) -> Result<Tensor> {
        per_expert(x, spans, self.experts, |rows, e| {
            let w = self
                .weight
                .narrow_rows(e * self.out_features, self.out_features)?;
            Ok(linear(rows, &w)?)
        })
    }

    /// The stacked weight of all experts.
    pub fn weight(&self) -> &LinearWeight {
        &self.weight
    }
}

/// An RMSNorm with one scale vector per expert, applied over the last dim.
#[derive(Debug, Clone)]
pub struct ExpertNorm {
    /// `1 + w` per expert, f32, `(experts·width)`.
    scale: Tensor,
    width: usize,
    experts: usize,
}
cadence_core::tensor_tree!(ExpertNorm { scale });

impl ExpertNorm {
    /// Loads the stored offset `weight` (`(experts·width)`) under `vb` and keeps `1 + w` (f32).
    pub fn load(vb: &VarBuilder, width: usize, experts: usize) -> Result<Self> {
        let w = vb.get_with_hints_dtype(experts * width, "weight", Init::Const(0.0), DType::F32)?;
        Ok(Self {
            scale: (w + 1.0)?,
            width,
            experts,
        })
    }

    /// Normalises `x` (`(L, …, width)`, any float dtype) in f32 and returns f32.
    pub fn forward(&self, x: &Tensor, spans: &ModalitySpans) -> Result<Tensor> {
        per_expert(x, spans, self.experts, |rows, e| {
            let scale = self.scale.narrow(0, e * self.width, self.width)?;
            Ok(rms_norm(rows, &scale, NORM_EPS)?)
        })
    }
}
