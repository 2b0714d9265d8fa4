//! Wan2.2 `Encoder3d`: patchified video chunk -> 2·z_dim channels, 8× smaller, time ÷4.

use cadence_core::CancelToken;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::blocks::{AvgDown3d, CausalConv3d, Head, Middle, Resample, ResidualBlock, StreamState};
use super::config::WanConfig;

/// One encoder stage (`downsamples.i`): residual blocks, optional downsampler, and the
/// averaging shortcut around all of it.
#[derive(Debug, Clone)]
struct DownBlock {
    blocks: Vec<ResidualBlock>,
    resample: Option<Resample>,
    shortcut: AvgDown3d,
}

impl DownBlock {
    fn forward(
        &self,
        x: &Tensor,
        state: &mut StreamState,
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
        Ok((h + self.shortcut.forward(x)?)?)
    }
}

/// The encoder (keys `encoder.*`).
#[derive(Debug, Clone)]
pub struct Encoder {
    conv1: CausalConv3d,
    stages: Vec<DownBlock>,
    middle: Middle,
    head: Head,
}

impl Encoder {
    /// Builds the encoder of `cfg` (12 patchified input channels).
    pub fn new(vb: &VarBuilder, cfg: &WanConfig) -> Result<Self> {
        let dims: Vec<usize> = std::iter::once(1)
            .chain(cfg.dim_mult.iter().copied())
            .map(|m| m * cfg.dim)
            .collect();
        let conv1 = CausalConv3d::cube(&vb.pp("conv1"), 12, dims[0], 3)?;
        let last = cfg.dim_mult.len() - 1;
        let mut stages = Vec::new();
        for (i, w) in dims.windows(2).enumerate() {
            let (c_in, c_out) = (w[0], w[1]);
            let t_down = cfg.temporal_downsample.get(i).copied().unwrap_or(false);
            let down = i != last;
            let vb = vb.pp(format!("downsamples.{i}.downsamples"));
            let mut blocks = Vec::new();
            for j in 0..cfg.num_res_blocks {
                let cin = if j == 0 { c_in } else { c_out };
                blocks.push(ResidualBlock::new(&vb.pp(j), cin, c_out)?);
            }
            let resample = if down {
                Some(Resample::down(&vb.pp(cfg.num_res_blocks), c_out, t_down)?)
            } else {
                None
            };
            let ft = if t_down { 2 } else { 1 };
            let fs = if down { 2 } else { 1 };
            stages.push(DownBlock {
                blocks,
                resample,
                shortcut: AvgDown3d::new(c_out, ft, fs),
            });
        }
        let c = dims[dims.len() - 1];
        Ok(Self {
            conv1,
            stages,
            middle: Middle::new(&vb.pp("middle"), c)?,
            head: Head::new(&vb.pp("head"), c, 2 * cfg.z_dim)?,
        })
    }

    /// One chunk of patchified frames (1 frame first, then 4 at a time) -> one latent frame.
    /// `cancel` is checked before every convolution of a residual block.
    pub fn forward(
        &self,
        x: &Tensor,
        state: &mut StreamState,
        cancel: &CancelToken,
    ) -> cadence_core::Result<Tensor> {
        state.begin_chunk();
        let mut x = self.conv1.forward_cached(x, state)?;
        for s in &self.stages {
            x = s.forward(&x, state, cancel)?;
        }
        let x = self.middle.forward(&x, state, cancel)?;
        cancel.check()?;
        Ok(self.head.forward(&x, state)?)
    }
}
