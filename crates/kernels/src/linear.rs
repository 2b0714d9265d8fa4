//! Bias-free linear layers `y = x · Wᵀ` with a dense (bf16) or an FP8 weight: the op boundary
//! of every GEMM in the DiT's transformer block.
//!
//! * [`LinearWeight::Dense`]: the reference path and the default. `x` is cast to the weight's
//!   dtype and multiplied with f32 accumulation; the result is in that dtype (rounded once, as
//!   the reference's bf16 GEMM).
//! * [`LinearWeight::Fp8`]: the weight is an [`Fp8Matrix`] scaled per output channel; each
//!   call quantises `x` per token (or per tensor, [`Scaling`]) and computes
//!   `ŷ[i, j] = s_x[i] · s_w[j] · Σₖ q̂ₓ[i, k] q̂_w[j, k]`, returned in `x`'s dtype. On CUDA
//!   devices of compute capability 9.x (H100, H200, feature `cuda`) this is one cuBLASLt FP8
//!   GEMM with per-row ("outer vector") scales applied in its epilogue; everywhere else the
//!   reference below computes the same formula: the e4m3 operands converted to f32 (exact), an
//!   f32 matmul (the products of e4m3 values are exact in f32, so only the summation order
//!   differs from the tensor cores), then the two scales.

#[cfg(feature = "cuda")]
mod cublaslt;

use candle_core::{bail, DType, Result, Tensor};

use crate::fp8::{Fp8Matrix, Scaling};

/// The weight of a bias-free linear layer, `(out, in)`.
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// A dense weight in the compute dtype (bf16 in production, f32 for exact checks).
    Dense(Tensor),
    /// An FP8 weight with per-output-channel scales; activations are quantised on each call.
    Fp8 {
        /// The quantised weight.
        weight: Fp8Matrix,
        /// How the activations are scaled.
        activations: Scaling,
    },
}

impl LinearWeight {
    /// Output features (rows of the weight).
    pub fn out_features(&self) -> Result<usize> {
        match self {
            Self::Dense(w) => w.dim(0),
            Self::Fp8 { weight, .. } => Ok(weight.rows()),
        }
    }

    /// Input features (logical columns of the weight).
    pub fn in_features(&self) -> Result<usize> {
        match self {
            Self::Dense(w) => w.dim(1),
            Self::Fp8 { weight, .. } => Ok(weight.cols()),
        }
    }

    /// Output rows `start..start + len` (one expert of a stacked weight); a view, no copy.
    pub fn narrow_rows(&self, start: usize, len: usize) -> Result<Self> {
        Ok(match self {
            Self::Dense(w) => Self::Dense(w.narrow(0, start, len)?),
            Self::Fp8 {
                weight,
                activations,
            } => Self::Fp8 {
                weight: weight.narrow_rows(start, len)?,
                activations: *activations,
            },
        })
    }

    /// Bytes the weight holds on its device.
    pub fn bytes(&self) -> usize {
        match self {
            Self::Dense(w) => w.elem_count() * w.dtype().size_in_bytes(),
            Self::Fp8 { weight, .. } => weight.bytes(),
        }
    }
}

impl cadence_core::TensorTree for LinearWeight {
    fn for_each_tensor(&self, f: &mut dyn FnMut(&Tensor)) {
        match self {
            Self::Dense(w) => f(w),
            Self::Fp8 { weight, .. } => cadence_core::TensorTree::for_each_tensor(weight, f),
        }
    }

    fn map_tensors(
        &self,
        f: &mut dyn FnMut(&Tensor) -> cadence_core::Result<Tensor>,
    ) -> cadence_core::Result<Self> {
        Ok(match self {
            Self::Dense(w) => Self::Dense(f(w)?),
            Self::Fp8 {
                weight,
                activations,
            } => Self::Fp8 {
                weight: cadence_core::TensorTree::map_tensors(weight, f)?,
                activations: *activations,
            },
        })
    }
}

/// `x · Wᵀ` for `x` `(L, in)`.
///
/// Dense weights return the weight's dtype; FP8 weights return `x`'s dtype (bf16 in
/// production, so the FP8 path rounds its output where the reference's bf16 GEMM does).
pub fn linear(x: &Tensor, weight: &LinearWeight) -> Result<Tensor> {
    let (_, k) = x.dims2()?;
    let expected = weight.in_features()?;
    if k != expected {
        bail!(
            "linear: input has {k} features, the weight takes {expected} (weight {:?})",
            weight_dims(weight)
        )
    }
    match weight {
        LinearWeight::Dense(w) => x.to_dtype(w.dtype())?.matmul(&w.t()?),
        LinearWeight::Fp8 {
            weight,
            activations,
        } => {
            let out_dtype = x.dtype();
            let xq = Fp8Matrix::quantize(x, *activations)?;
            fp8_matmul(&xq, weight, out_dtype)
        }
    }
}

/// `ŷ = s_x s_wᵀ ⊙ (q̂ₓ q̂_wᵀ)` for two quantised operands `(L, K)` and `(N, K)`, in
/// `out_dtype`: cuBLASLt where it applies, else [`reference_fp8_matmul`].
pub fn fp8_matmul(x: &Fp8Matrix, w: &Fp8Matrix, out_dtype: DType) -> Result<Tensor> {
    if x.cols() != w.cols() {
        bail!(
            "FP8 matmul: x has {} columns, the weight {}",
            x.cols(),
            w.cols()
        )
    }
    #[cfg(feature = "cuda")]
    if let Some(y) = cublaslt::matmul(x, w, out_dtype)? {
        return Ok(y);
    }
    reference_fp8_matmul(x, w, out_dtype)
}

/// The FP8 GEMM from candle ops on any device: e4m3 operands as exact f32 values, an f32
/// matmul, then `· s_x[i]` and `· s_w[j]` in f32, cast to `out_dtype`.
pub fn reference_fp8_matmul(x: &Fp8Matrix, w: &Fp8Matrix, out_dtype: DType) -> Result<Tensor> {
    let acc = x.unscaled_f32()?.matmul(&w.unscaled_f32()?.t()?)?;
    acc.broadcast_mul(&x.scale().unsqueeze(1)?)?
        .broadcast_mul(&w.scale().unsqueeze(0)?)?
        .to_dtype(out_dtype)
}

fn weight_dims(weight: &LinearWeight) -> (usize, usize) {
    (
        weight.out_features().unwrap_or(0),
        weight.in_features().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests;
