//! Convolution weights as the checkpoints store them, run through the op boundary.

use cadence_kernels::conv3d::{conv3d, Conv3dConfig, Dims3};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// A Conv3d (`weight [out, in, kt, kh, kw]`, `bias [out]`) or a Conv2d applied per frame
/// (`weight [out, in, kh, kw]`, run as a Conv3d with `kt = 1`).
#[derive(Debug, Clone)]
pub struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Conv {
    /// A Conv3d with bias; `k = (kt, kh, kw)`.
    pub fn conv3d(
        vb: &VarBuilder,
        c_in: usize,
        c_out: usize,
        k: (usize, usize, usize),
    ) -> Result<Self> {
        Ok(Self {
            weight: vb.get((c_out, c_in, k.0, k.1, k.2), "weight")?,
            bias: Some(vb.get(c_out, "bias")?),
        })
    }

    /// A Conv2d with bias and a square kernel `k`, applied to every frame.
    pub fn conv2d(vb: &VarBuilder, c_in: usize, c_out: usize, k: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get((c_out, c_in, k, k), "weight")?.unsqueeze(2)?,
            bias: Some(vb.get(c_out, "bias")?),
        })
    }

    /// Temporal kernel size.
    pub fn kt(&self) -> usize {
        self.weight.dims()[2]
    }

    /// Runs the convolution on `[B, C, T, H, W]` with stride and zero padding `cfg`.
    pub fn forward(&self, x: &Tensor, cfg: Conv3dConfig) -> Result<Tensor> {
        conv3d(x, &self.weight, self.bias.as_ref(), cfg)
    }

    /// Stride 1, spatial zero padding `p` on height and width, none in time.
    pub fn forward_same(&self, x: &Tensor, p: usize) -> Result<Tensor> {
        self.forward(x, Conv3dConfig::padded(Dims3::new(0, p, p)))
    }
}
