//! `OobleckEncoder`: stereo waveform -> `2·latent` channels at 1/2048 of the sample rate.

use cadence_core::CancelToken;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::config::EncoderConfig;
use super::layers::{ConvShape, Direction, ResidualUnit, Snake, WnConv1d, DILATIONS};

/// Three residual units, snake, strided conv (keys `layers.{0..4}`).
#[derive(Debug, Clone)]
struct EncoderBlock {
    units: Vec<ResidualUnit>,
    snake: Snake,
    conv: WnConv1d,
}

impl EncoderBlock {
    fn new(vb: &VarBuilder, c_in: usize, c_out: usize, stride: usize) -> Result<Self> {
        let vb = vb.pp("layers");
        let units = DILATIONS
            .iter()
            .enumerate()
            .map(|(i, &d)| ResidualUnit::new(&vb.pp(i), c_in, d))
            .collect::<Result<_>>()?;
        Ok(Self {
            units,
            snake: Snake::new(&vb.pp(3), c_in)?,
            conv: WnConv1d::new(
                &vb.pp(4),
                ConvShape::strided(c_in, c_out, stride),
                Direction::Forward,
            )?,
        })
    }

    fn forward(&self, x: &Tensor, cancel: &CancelToken) -> cadence_core::Result<Tensor> {
        let mut x = x.clone();
        for u in &self.units {
            cancel.check()?;
            x = u.forward(&x)?;
        }
        Ok(self.conv.forward(&self.snake.forward(&x)?)?)
    }
}

/// The encoder (keys `encoder.layers.*`).
#[derive(Debug, Clone)]
pub struct Encoder {
    conv_in: WnConv1d,
    blocks: Vec<EncoderBlock>,
    snake: Snake,
    conv_out: WnConv1d,
}

impl Encoder {
    /// Builds the encoder of `cfg`.
    pub fn new(vb: &VarBuilder, cfg: &EncoderConfig) -> Result<Self> {
        let vb = vb.pp("layers");
        let widths: Vec<usize> = std::iter::once(1)
            .chain(cfg.c_mults.iter().copied())
            .map(|m| m * cfg.channels)
            .collect();
        let conv_in = WnConv1d::new(
            &vb.pp(0),
            ConvShape::same(cfg.in_channels, widths[0], 7, 1),
            Direction::Forward,
        )?;
        let blocks = cfg
            .strides
            .iter()
            .enumerate()
            .map(|(i, &s)| EncoderBlock::new(&vb.pp(i + 1), widths[i], widths[i + 1], s))
            .collect::<Result<Vec<_>>>()?;
        let n = blocks.len();
        let c = widths[n];
        Ok(Self {
            conv_in,
            blocks,
            snake: Snake::new(&vb.pp(n + 1), c)?,
            conv_out: WnConv1d::new(
                &vb.pp(n + 2),
                ConvShape::same(c, cfg.latent_dim, 3, 1),
                Direction::Forward,
            )?,
        })
    }

    /// `[B, C_in, N] -> [B, latent_dim, floor(N / 2048)]`. `cancel` is checked before every
    /// residual unit.
    pub fn forward(&self, x: &Tensor, cancel: &CancelToken) -> cadence_core::Result<Tensor> {
        let mut x = self.conv_in.forward(x)?;
        for b in &self.blocks {
            x = b.forward(&x, cancel)?;
        }
        cancel.check()?;
        Ok(self.conv_out.forward(&self.snake.forward(&x)?)?)
    }
}
