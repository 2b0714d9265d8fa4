//! Turbo-VAED building blocks. Unlike Wan, time is padded by replicating the edge frames on both
//! sides (the convs are named causal but are not), and the norms have no parameters.

use cadence_kernels::conv3d::{Conv3dConfig, Dims3};
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use crate::conv::Conv;
use crate::video::frame_groups::map_frames;
use crate::video::upsample::{interleave_halves, upsample_nearest_2x};

/// Affine-free RMSNorm over channels: `x * rsqrt(mean_c(x²) + eps)`, computed in f32, then
/// `act`; run a few frames at a time so the f32 temporaries stay small.
pub fn norm_act(x: &Tensor, eps: f64, act: Activation) -> Result<Tensor> {
    map_frames(x, |x| {
        let xf = x.to_dtype(DType::F32)?;
        let inv = (xf.sqr()?.mean_keepdim(1)? + eps)?.sqrt()?.recip()?;
        let y = xf.broadcast_mul(&inv)?.to_dtype(x.dtype())?;
        match act {
            Activation::None => Ok(y),
            Activation::Relu => y.relu(),
            Activation::Silu => y.silu(),
        }
    })
}

/// The activation fused after a norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// The norm's output as it is.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `x · sigmoid(x)`.
    Silu,
}

/// A Conv3d with replicate time padding `(kt-1)/2` on both sides and zero spatial padding
/// `k/2` (keys `<name>.conv.*`).
#[derive(Debug, Clone)]
pub struct ReplicateConv3d {
    conv: Conv,
    k: usize,
}

impl ReplicateConv3d {
    /// A `k×k×k` conv (`k` = 1 or 3).
    pub fn cube(vb: &VarBuilder, c_in: usize, c_out: usize, k: usize) -> Result<Self> {
        Ok(Self {
            conv: Conv::conv3d(&vb.pp("conv"), c_in, c_out, (k, k, k))?,
            k,
        })
    }

    /// A temporal `(3, 1, 1)` conv.
    pub fn temporal(vb: &VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Self {
            conv: Conv::conv3d(&vb.pp("conv"), c_in, c_out, (3, 1, 1))?,
            k: 1,
        })
    }

    /// `[B, C, T, H, W] -> [B, C_out, T, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let pt = (self.conv.kt() - 1) / 2;
        let p = self.k / 2;
        self.conv
            .forward(x, Conv3dConfig::replicate_time(Dims3::new(pt, p, p)))
    }
}

/// Resnet: `norm -> (ReLU | SiLU) -> conv -> norm -> SiLU -> conv`, plus the shortcut
/// (`norm(eps) -> 1×1×1 conv` when the width changes).
#[derive(Debug, Clone)]
pub struct ResnetBlock {
    conv1: ReplicateConv3d,
    conv2: ReplicateConv3d,
    shortcut: Option<ReplicateConv3d>,
    relu_first: bool,
    shortcut_eps: f64,
}

/// Epsilon of the two norms inside a resnet and of the final norm.
pub const NORM_EPS: f64 = 1e-8;

impl ResnetBlock {
    /// Keys `conv1.conv.*`, `conv2.conv.*`, `conv_shortcut.conv.*`.
    pub fn new(
        vb: &VarBuilder,
        c_in: usize,
        c_out: usize,
        relu_first: bool,
        eps: f64,
    ) -> Result<Self> {
        Ok(Self {
            conv1: ReplicateConv3d::cube(&vb.pp("conv1"), c_in, c_out, 3)?,
            conv2: ReplicateConv3d::cube(&vb.pp("conv2"), c_out, c_out, 3)?,
            shortcut: if c_in != c_out {
                Some(ReplicateConv3d::cube(
                    &vb.pp("conv_shortcut"),
                    c_in,
                    c_out,
                    1,
                )?)
            } else {
                None
            },
            relu_first,
            shortcut_eps: eps,
        })
    }

    /// One window.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let first = if self.relu_first {
            Activation::Relu
        } else {
            Activation::Silu
        };
        // Scoped so that each full-size intermediate is freed as soon as it is consumed: at
        // most three activations of this size are alive at once.
        let h = {
            let n = {
                let h = self.conv1.forward(&norm_act(x, NORM_EPS, first)?)?;
                norm_act(&h, NORM_EPS, Activation::Silu)?
            };
            self.conv2.forward(&n)?
        };
        match &self.shortcut {
            Some(s) => h + s.forward(&norm_act(x, self.shortcut_eps, Activation::None)?)?,
            None => h + x,
        }
    }
}

/// The upsampler of an up block (`upsamplers.0.*`).
#[derive(Debug, Clone)]
pub struct Upsampler {
    time_conv: Option<ReplicateConv3d>,
    spatial: Conv,
}

impl Upsampler {
    /// Temporal+spatial (`time_conv.conv.*`, C -> 2C) or spatial only; `resample.1.*` 3×3.
    pub fn new(vb: &VarBuilder, c: usize, spatial_only: bool) -> Result<Self> {
        Ok(Self {
            time_conv: if spatial_only {
                None
            } else {
                Some(ReplicateConv3d::temporal(&vb.pp("time_conv"), c, 2 * c)?)
            },
            spatial: Conv::conv2d(&vb.pp("resample.1"), c, c, 3)?,
        })
    }

    /// Time conv doubling the frames (dropping the first on the window that starts the clip),
    /// then nearest ×2 and a 3×3 conv.
    pub fn forward(&self, x: &Tensor, first_chunk: bool) -> Result<Tensor> {
        let x = match &self.time_conv {
            Some(tc) => {
                let y = interleave_halves(&tc.forward(x)?)?;
                if first_chunk {
                    let t = y.dim(2)?;
                    y.narrow(2, 1, t - 1)?
                } else {
                    y
                }
            }
            None => x.clone(),
        };
        self.spatial.forward_same(&upsample_nearest_2x(&x)?, 1)
    }
}
