//! Wan2.2 `Decoder3d`: one latent frame at a time -> 12-channel patches (1 frame, then 4).

use cadence_core::CancelToken;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::blocks::{CausalConv3d, DupUp3d, Head, Middle, Resample, ResidualBlock, StreamState};
use super::config::WanConfig;

/// One decoder stage (`upsamples.i`): residual blocks, optional upsampler and, when it
/// upsamples, the duplicating shortcut. The last stage has no shortcut at all.
#[derive(Debug, Clone)]
struct UpBlock {
    blocks: Vec<ResidualBlock>,
    resample: Option<Resample>,
    shortcut: Option<DupUp3d>,
}

impl UpBlock {
    fn forward(
        &self,
        x: &Tensor,
        state: &mut StreamState,
        first_chunk: bool,
        cancel: &CancelToken,
    ) -> cadence_core::Result<Tensor> {
        let mut h = x.clone();
        for b in &self.blocks {
            h = b.forward(&h, state, cancel)?;
        }
        if let Some(r) = &self.resample {
            cancel.check()?;
            h = r.forward(&h, state)?;
        }
        Ok(match &self.shortcut {
            Some(s) => (h + s.forward(x, first_chunk)?)?,
            None => h,
        })
    }
}

/// The decoder (keys `decoder.*`).
#[derive(Debug, Clone)]
pub struct Decoder {
    conv1: CausalConv3d,
    middle: Middle,
    stages: Vec<UpBlock>,
    head: Head,
}

impl Decoder {
    /// Builds the decoder of `cfg` (12 patchified output channels).
    pub fn new(vb: &VarBuilder, cfg: &WanConfig) -> Result<Self> {
        let mults = &cfg.dim_mult;
        let dims: Vec<usize> = std::iter::once(mults[mults.len() - 1])
            .chain(mults.iter().rev().copied())
            .map(|m| m * cfg.dec_dim)
            .collect();
        let t_up: Vec<bool> = cfg.temporal_downsample.iter().rev().copied().collect();
        let last = mults.len() - 1;
        let mut stages = Vec::new();
        for (i, w) in dims.windows(2).enumerate() {
            let (c_in, c_out) = (w[0], w[1]);
            let temporal = t_up.get(i).copied().unwrap_or(false);
            let up = i != last;
            let vb = vb.pp(format!("upsamples.{i}.upsamples"));
            let n = cfg.num_res_blocks + 1;
            let mut blocks = Vec::new();
            for j in 0..n {
                let cin = if j == 0 { c_in } else { c_out };
                blocks.push(ResidualBlock::new(&vb.pp(j), cin, c_out)?);
            }
            let (resample, shortcut) = if up {
                let ft = if temporal { 2 } else { 1 };
                (
                    Some(Resample::up(&vb.pp(n), c_out, temporal)?),
                    Some(DupUp3d::new(c_out, ft, 2)),
                )
            } else {
                (None, None)
            };
            stages.push(UpBlock {
                blocks,
                resample,
                shortcut,
            });
        }
        Ok(Self {
            conv1: CausalConv3d::cube(&vb.pp("conv1"), cfg.z_dim, dims[0], 3)?,
            middle: Middle::new(&vb.pp("middle"), dims[0])?,
            stages,
            head: Head::new(&vb.pp("head"), dims[dims.len() - 1], 12)?,
        })
    }

    /// One latent frame -> `[B, 12, t, 8h, 8w]` with t = 1 on the first chunk, else 4.
    /// `cancel` is checked before every convolution of a residual block.
    pub fn forward(
        &self,
        x: &Tensor,
        state: &mut StreamState,
        first_chunk: bool,
        cancel: &CancelToken,
    ) -> cadence_core::Result<Tensor> {
        state.begin_chunk();
        let x = self.conv1.forward_cached(x, state)?;
        let mut x = self.middle.forward(&x, state, cancel)?;
        for s in &self.stages {
            x = s.forward(&x, state, first_chunk, cancel)?;
        }
        cancel.check()?;
        Ok(self.head.forward(&x, state)?)
    }
}
