//! Rotary position embeddings in the rotate-half layout (`x' = x*cos + rot(x)*sin` with
//! `rot(x) = concat(-x[d/2:], x[:d/2])`), positions `0..L`.
//!
//! The tables follow the reference's float path so f32 runs agree to the last bits: the inverse
//! frequencies and angles are f32, `cos`/`sin` are taken of the f32 angle, and the tables are then
//! cast to the model dtype. They are tiny (`L x head_dim`), so they are built on the host and
//! copied to the device.

use candle_core::{DType, Device, Tensor, D};

use cadence_core::Result;

/// `cos` and `sin` tables, `[L, head_dim]`, in the model dtype.
#[derive(Debug, Clone)]
pub struct RotaryTables {
    /// `cos(p * inv_freq[k mod d/2])`.
    pub cos: Tensor,
    /// `sin(p * inv_freq[k mod d/2])`.
    pub sin: Tensor,
}

impl RotaryTables {
    /// Tables for positions `0..len` of heads of width `head_dim` (even).
    pub fn new(
        head_dim: usize,
        theta: f64,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|k| (1.0 / theta.powf((2 * k) as f64 / head_dim as f64)) as f32)
            .collect();
        let mut cos = Vec::with_capacity(len * head_dim);
        let mut sin = Vec::with_capacity(len * head_dim);
        for p in 0..len {
            // The angle is an f32 product, as in the reference; cos/sin of it are then rounded
            // once to f32.
            let angles: Vec<f64> = inv_freq.iter().map(|&f| (p as f32 * f) as f64).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos() as f32));
                sin.extend(angles.iter().map(|a| a.sin() as f32));
            }
        }
        let table = |v: Vec<f32>| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, (len, head_dim), device)?.to_dtype(dtype)?)
        };
        Ok(Self {
            cos: table(cos)?,
            sin: table(sin)?,
        })
    }

    /// Rotates `x` of shape `[B, heads, L, head_dim]`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let half = x.dim(D::Minus1)? / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        let a = x.broadcast_mul(&self.cos)?;
        let b = rotated.broadcast_mul(&self.sin)?;
        Ok((a + b)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_the_identity_and_norms_are_kept() {
        let dev = Device::Cpu;
        let rope = RotaryTables::new(8, 10_000.0, 3, DType::F32, &dev).unwrap();
        let x = Tensor::arange(0f32, 24.0, &dev)
            .unwrap()
            .reshape((1, 1, 3, 8))
            .unwrap();
        let y = rope.apply(&x).unwrap();
        let (x0, y0) = (
            x.get(0).unwrap().get(0).unwrap().get(0).unwrap(),
            y.get(0).unwrap().get(0).unwrap().get(0).unwrap(),
        );
        assert_eq!(x0.to_vec1::<f32>().unwrap(), y0.to_vec1::<f32>().unwrap());
        let nx = x
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let ny = y
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((nx - ny).abs() < 1e-3 * nx);
    }
}
