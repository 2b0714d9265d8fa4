//! How far an FP8 GEMM may be from the exact product, derived from the e4m3 format.
//!
//! This crate's FP8 tests enforce these bounds on `cadence_kernels`' quantisation and GEMMs, on
//! whole layers at the real width and on the fixture's FP8 DiT; none of them is fitted to a
//! measured error.
//!
//! # One rounding
//!
//! e4m3 has 3 explicit mantissa bits. Rounding to nearest (ties to even) a value `q` whose
//! magnitude lies in e4m3's normal range (`|q| ≥ 2⁻⁶`) changes it by at most half a unit in the
//! last place, `|q̂ − q| ≤ 2⁻⁴ |q|`: the unit roundoff is [`UNIT_ROUNDOFF`] `u = 2⁻⁴`. Below
//! `2⁻⁶` the spacing is the fixed subnormal step `2⁻⁹`, so `|q̂ − q| ≤ 2⁻¹⁰`
//! ([`SUBNORMAL_ERROR`]). Values never saturate: the scale maps each row's largest magnitude
//! onto 448 exactly (up to the f32 division, whose `2⁻²⁴` relative error rounds back to 448).
//! With `q = v / s` computed in f32 and dequantised as `q̂ · s`, every element `v` of a
//! quantised operand with scale `s` therefore satisfies
//!
//! ```text
//! |v̂ − v| ≤ u' |v| + η s,   u' = 2⁻⁴ + 2⁻²³ (the division's rounding),  η = 2⁻¹⁰.
//! ```
//!
//! # A GEMM, element by element (rigorous)
//!
//! `ŷ = s_x s_w Σₖ q̂ₓ q̂_w`. Products of two e4m3 values are exact in f32 (4-bit significands),
//! the sum is accumulated in f32, and the two scale multiplications and the final cast round
//! once each. Writing `a = u'|x| + η s_x`, `b = u'|w| + η s_w` (elementwise), the error of one
//! output element is at most
//!
//! ```text
//! Σₖ [a (|w| + b) + |x| b]                      quantisation of both operands
//! + γ_K Σₖ [(|x| + a)(|w| + b) + |x||w|]       f32 accumulation, of ŷ and of the f32 reference
//! + (2⁻²³ + ε_out) |ŷ|                          scale products and the cast to the output dtype
//! ```
//!
//! with `γ_K = K·2⁻²⁴ / (1 − K·2⁻²⁴)` and `ε_out` the output dtype's unit roundoff (2⁻⁸ for
//! bf16). [`gemm_error_bound`] evaluates it with four f32 matmuls of non-negative matrices
//! (whose own relative error is at most `γ_K`, so the result is inflated by `1 + 2γ_K`). This
//! holds for the host reference, which accumulates in f32. cuBLASLt's FP8 kernels on Hopper
//! also accumulate in f32 (we never set `CUBLASLT_MATMUL_DESC_FAST_ACCUM`), but the tensor cores
//! add partial products with fewer bits before each promotion to f32; whether the GPU result
//! stays inside the bound has to be checked on an H100.
//!
//! # A GEMM as a whole (statistical)
//!
//! The elementwise bound is what a single unlucky element may reach; over a whole output the
//! rounding errors of different elements are independent and centred (round-to-nearest is
//! unbiased for values spread over a binade), so they add in quadrature. With every relative
//! perturbation bounded by `u`, `E‖ŷ − y‖² ≤ 2u² Σᵢⱼₖ xᵢₖ² wⱼₖ²`, so
//!
//! ```text
//! rel_L2(ŷ, y) ≲ √2 · u · κ,   κ² = Σᵢⱼₖ xᵢₖ² wⱼₖ² / Σᵢⱼ yᵢⱼ²
//! ```
//!
//! `κ` measures how much the products cancel; it is close to 1 when the weights are not
//! aligned with the activations (random weights: exactly 1 in expectation). The bound uses the
//! worst-case `|δ| ≤ u` where the mean square of a rounding error is at most `u²/3`, so it sits
//! `√3` above the expected error before any cancellation. [`gemm_rel_l2_bound`] evaluates it.
//!
//! # A layer and the whole model
//!
//! Each branch of a layer chains two GEMMs (`qkv` then `proj`; `up_gate` then `down`) around
//! operations that carry a relative input error through with gain about 1 (RMSNorm, rope,
//! softmax attention with moderate logits, the gate, the clamped activations). Each GEMM adds
//! `√2 u` (κ ≈ 1); the swiglu multiplies two halves of the same `up_gate` output, which counts
//! that GEMM's error twice. Hence a branch's output carries at most [`BRANCH_REL_L2`]
//! `= √(2 + 2 + 2) · u = √6 · u ≈ 0.153` relative L2 error of its own, plus the relative error
//! of its input. Through the network ([`propagate`], one step per branch): the error of the
//! residual stream is carried by the identity path and by the branch, which passes its input's
//! relative error on to its output (gain `√(1 + (‖branch‖/‖x‖)²)`: the branch's image of the
//! error is not aligned with the error itself, so the two add in quadrature), and each branch
//! adds a fresh error of `BRANCH_REL_L2 · ‖branch‖`, independent of the other branches' (so in
//! quadrature with the carried error). The final RMSNorm and the f32 output
//! head carry the relative error of the residual stream to the velocities.
//!
//! The assumptions (κ ≈ 1, unit gain through the nonlinear parts) are what makes the layer and
//! model bounds estimates rather than theorems; the tests compute them from the unquantised
//! model's own tensor norms, never from the FP8 error they check.

use candle_core::{DType, Result, Tensor};

/// Unit roundoff of e4m3 with round-to-nearest-even: 3 mantissa bits, `2⁻⁴`.
pub const UNIT_ROUNDOFF: f64 = 0.0625;

/// The largest error of rounding a value in e4m3's subnormal range (half the step `2⁻⁹`).
pub const SUBNORMAL_ERROR: f64 = 1.0 / 1024.0;

/// Relative L2 error one branch of a layer (attention or MLP) adds: `√6 · u`.
pub const BRANCH_REL_L2: f64 = 2.449_489_742_783_178 * UNIT_ROUNDOFF;

/// f32 unit roundoff.
const F32_ROUNDOFF: f64 = 1.0 / 16_777_216.0;

/// The unit roundoff of a float dtype (the cast of a GEMM result to it).
pub fn dtype_roundoff(dtype: DType) -> f64 {
    match dtype {
        DType::BF16 => 1.0 / 256.0,
        DType::F16 => 1.0 / 2048.0,
        DType::F64 => 0.0,
        _ => F32_ROUNDOFF,
    }
}

/// `γ_n = n·2⁻²⁴ / (1 − n·2⁻²⁴)`: the relative error bound of an f32 sum of `n` terms.
fn gamma(n: usize) -> f64 {
    let nu = n as f64 * F32_ROUNDOFF;
    nu / (1.0 - nu)
}

/// Per-element bound on `|ŷ − x·wᵀ|` for the FP8 GEMM of `x` `(L, K)` and `w` `(N, K)` whose
/// operands were quantised with scales `x_scale` `(L,)` and `w_scale` `(N,)`, returned in
/// `out_dtype` (see the module docs for the derivation). Returns `(L, N)` f32.
pub fn gemm_error_bound(
    x: &Tensor,
    w: &Tensor,
    x_scale: &Tensor,
    w_scale: &Tensor,
    out_dtype: DType,
) -> Result<Tensor> {
    let k = x.dim(1)?;
    let u = UNIT_ROUNDOFF + 2.0 * F32_ROUNDOFF;
    let abs_x = x.to_dtype(DType::F32)?.abs()?;
    let abs_w = w.to_dtype(DType::F32)?.abs()?;
    let slack = |abs: &Tensor, scale: &Tensor| -> Result<Tensor> {
        (abs * u)?.broadcast_add(&(scale.to_dtype(DType::F32)? * SUBNORMAL_ERROR)?.unsqueeze(1)?)
    };
    let a = slack(&abs_x, x_scale)?;
    let b = slack(&abs_w, w_scale)?;
    let w_hat = (&abs_w + &b)?;
    let quantisation = (a.matmul(&w_hat.t()?)? + abs_x.matmul(&b.t()?)?)?;
    let exact = abs_x.matmul(&abs_w.t()?)?;
    let accumulated = ((&abs_x + &a)?.matmul(&w_hat.t()?)? + &exact)?;
    let magnitude = (&exact + &quantisation)?;
    let g = gamma(k);
    let bound = ((quantisation + (accumulated * g)?)?
        + (magnitude * (2.0 * F32_ROUNDOFF + dtype_roundoff(out_dtype)))?)?;
    bound * (1.0 + 2.0 * g)
}

/// The statistical bound `√2 · u · κ` on the relative L2 error of a whole FP8 GEMM output
/// (module docs), from the unquantised operands `x` `(L, K)` and `w` `(N, K)`.
pub fn gemm_rel_l2_bound(x: &Tensor, w: &Tensor) -> Result<f64> {
    let x = x.to_dtype(DType::F32)?;
    let w = w.to_dtype(DType::F32)?;
    let y = x.matmul(&w.t()?)?;
    let squares = x.sqr()?.matmul(&w.sqr()?.t()?)?;
    let num = squares.sum_all()?.to_scalar::<f32>()? as f64;
    let den = y.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    Ok(2f64.sqrt() * UNIT_ROUNDOFF * (num / den.max(f64::MIN_POSITIVE)).sqrt())
}

/// One residual branch (`x += branch(x)`) of the unquantised model, by its norms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResidualBranch {
    /// `‖x‖` of the residual stream entering the branch.
    pub input: f64,
    /// `‖branch(x)‖`, the branch's output (`attn_out` or `mlp_out`).
    pub output: f64,
}

impl ResidualBranch {
    /// The bound on the absolute L2 error the branch adds with an exact input:
    /// `BRANCH_REL_L2 · ‖branch(x)‖`.
    pub fn fresh_error(&self) -> f64 {
        BRANCH_REL_L2 * self.output
    }

    /// The factor by which the step carries an error of its input: the identity, plus the
    /// branch passing its input's relative error on with gain 1, the two in quadrature (the
    /// branch maps the error through its own Jacobian, which is not aligned with the error).
    pub fn gain(&self) -> f64 {
        let r = self.output / self.input.max(f64::MIN_POSITIVE);
        (1.0 + r * r).sqrt()
    }
}

/// The absolute L2 error bound of the residual stream after each branch of an FP8 model whose
/// unquantised twin has the given branch norms (two per layer, attention then MLP):
/// `eᵢ² = (gᵢ eᵢ₋₁)² + fᵢ²` with gain `gᵢ` and fresh error `fᵢ` of [`ResidualBranch`],
/// starting from an exact input (`e₀ = 0`). The fresh errors of different branches come from
/// different roundings, hence the quadrature.
pub fn propagate(branches: &[ResidualBranch]) -> Vec<f64> {
    let mut error = 0.0f64;
    branches
        .iter()
        .map(|b| {
            error = ((b.gain() * error).powi(2) + b.fresh_error().powi(2)).sqrt();
            error
        })
        .collect()
}
