//! The two clamped MLP activations of the model (alpha 1.702, limit 7).

use candle_core::{DType, Result, Tensor, D};

/// Slope of the sigmoid that approximates GELU: `x * sigmoid(1.702 x)`.
pub const ALPHA: f64 = 1.702;
/// Clamp limit of both activations.
pub const LIMIT: f64 = 7.0;

/// gelu7: `a * sigmoid(1.702 a)` with `a = min(u, 7)`; there is no lower clamp. f32 in and out.
pub fn gelu7(u: &Tensor) -> Result<Tensor> {
    let a = u.to_dtype(DType::F32)?.minimum(LIMIT)?;
    sigmoid_gate(&a)
}

/// swiglu7 on interleaved columns: `gate = u[:, 0::2]`, `lin = u[:, 1::2]`,
/// `a = min(gate, 7)`, `out = a * sigmoid(1.702 a) * (clamp(lin, -7, 7) + 1)`.
///
/// The up-projection writes gate and linear halves as even/odd column pairs (not two halves), so
/// the output has half the columns of `u`. f32 in and out.
pub fn swiglu7(u: &Tensor) -> Result<Tensor> {
    let u = u.to_dtype(DType::F32)?;
    let (rows, cols) = u.dims2()?;
    if cols % 2 != 0 {
        candle_core::bail!("swiglu7 needs an even number of columns, got {cols}");
    }
    let pairs = u.reshape((rows, cols / 2, 2))?;
    let gate = pairs.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
    let lin = pairs.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?;
    let a = gate.minimum(LIMIT)?;
    let lin = (lin.clamp(-LIMIT, LIMIT)? + 1.0)?;
    sigmoid_gate(&a)?.mul(&lin)
}

/// `a * sigmoid(ALPHA * a)`, with the sigmoid as `1 / (1 + exp(-x))` in f32.
fn sigmoid_gate(a: &Tensor) -> Result<Tensor> {
    a.mul(&sigmoid(&(a * ALPHA)?)?)
}

/// Logistic sigmoid in f32.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}
