//! The Turbo-VAED decoder for one window of latent frames.

use cadence_core::CancelToken;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::blocks::{norm_act, Activation, ReplicateConv3d, ResnetBlock, Upsampler, NORM_EPS};
use super::config::TurboConfig;
use crate::video::unpatchify;

/// An up block: optional width-changing resnet, optional upsampler, then resnets (ReLU-first
/// when the block upsamples). The order is conv_in -> upsampler -> resnets.
#[derive(Debug, Clone)]
struct UpBlock {
    conv_in: Option<ResnetBlock>,
    upsampler: Option<Upsampler>,
    resnets: Vec<ResnetBlock>,
}

/// `TurboVAEDDecoder3d` (keys `decoder.*`).
#[derive(Debug, Clone)]
pub struct Decoder {
    conv_in: ReplicateConv3d,
    mid: Vec<ResnetBlock>,
    up_blocks: Vec<UpBlock>,
    conv_out: ReplicateConv3d,
}

impl Decoder {
    /// Builds the decoder of `cfg`.
    pub fn new(vb: &VarBuilder, cfg: &TurboConfig) -> Result<Self> {
        let ch: Vec<usize> = cfg
            .decoder_block_out_channels
            .iter()
            .rev()
            .copied()
            .collect();
        let layers: Vec<usize> = cfg.decoder_layers_per_block.iter().rev().copied().collect();
        let scaling: Vec<bool> = cfg
            .decoder_spatio_temporal_scaling
            .iter()
            .rev()
            .copied()
            .collect();
        let spatial_only: Vec<bool> = cfg.decoder_spatio_only.iter().rev().copied().collect();
        let eps = cfg.resnet_norm_eps;

        let conv_in = ReplicateConv3d::cube(&vb.pp("conv_in"), cfg.latent_channels, ch[0], 3)?;
        let mid = (0..layers[0])
            .map(|j| {
                ResnetBlock::new(
                    &vb.pp(format!("mid_block.resnets.{j}")),
                    ch[0],
                    ch[0],
                    false,
                    eps,
                )
            })
            .collect::<Result<_>>()?;
        let mut up_blocks = Vec::new();
        for i in 0..ch.len() {
            let vb = vb.pp(format!("up_blocks.{i}"));
            let c_in = if i == 0 { ch[0] } else { ch[i - 1] };
            let c = ch[i];
            let conv_in = if c_in != c {
                Some(ResnetBlock::new(&vb.pp("conv_in"), c_in, c, false, eps)?)
            } else {
                None
            };
            let upsampler = if scaling[i] {
                Some(Upsampler::new(&vb.pp("upsamplers.0"), c, spatial_only[i])?)
            } else {
                None
            };
            let resnets = (0..layers[i + 1])
                .map(|j| ResnetBlock::new(&vb.pp(format!("resnets.{j}")), c, c, scaling[i], eps))
                .collect::<Result<_>>()?;
            up_blocks.push(UpBlock {
                conv_in,
                upsampler,
                resnets,
            });
        }
        let out = cfg.out_channels * cfg.patch_size * cfg.patch_size;
        let conv_out = ReplicateConv3d::cube(&vb.pp("conv_out"), ch[ch.len() - 1], out, 3)?;
        Ok(Self {
            conv_in,
            mid,
            up_blocks,
            conv_out,
        })
    }

    /// A de-normalised latent window `[B, 48, n, h, w]` -> video `[B, 3, T', 16h, 16w]` with
    /// `T' = 4n - 3` when `first_chunk` (the window starts the clip), else `4n`. `cancel` is
    /// checked after every block, so a window stops within one block of a request.
    pub fn forward(
        &self,
        z: &Tensor,
        first_chunk: bool,
        cancel: &CancelToken,
    ) -> cadence_core::Result<Tensor> {
        let mut x = self.conv_in.forward(z)?;
        for r in &self.mid {
            cancel.check()?;
            x = r.forward(&x)?;
        }
        for b in &self.up_blocks {
            if let Some(c) = &b.conv_in {
                cancel.check()?;
                x = c.forward(&x)?;
            }
            if let Some(u) = &b.upsampler {
                cancel.check()?;
                x = u.forward(&x, first_chunk)?;
            }
            for r in &b.resnets {
                cancel.check()?;
                x = r.forward(&x)?;
            }
        }
        cancel.check()?;
        let x = norm_act(&x, NORM_EPS, Activation::Silu)?;
        Ok(unpatchify(&self.conv_out.forward(&x)?)?)
    }
}
