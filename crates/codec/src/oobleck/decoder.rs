//! `OobleckDecoder`: latent -> stereo waveform, 2048 samples per latent frame.

use cadence_core::CancelToken;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::config::DecoderConfig;
use super::layers::{ConvShape, Direction, ResidualUnit, Snake, WnConv1d, DILATIONS};

/// Snake, transposed strided conv, three residual units (keys `layers.{0..4}`).
#[derive(Debug, Clone)]
struct DecoderBlock {
    snake: Snake,
    conv: WnConv1d,
    units: Vec<ResidualUnit>,
}

impl DecoderBlock {
    fn new(vb: &VarBuilder, c_in: usize, c_out: usize, stride: usize) -> Result<Self> {
        let vb = vb.pp("layers");
        let units = DILATIONS
            .iter()
            .enumerate()
            .map(|(i, &d)| ResidualUnit::new(&vb.pp(i + 2), c_out, d))
            .collect::<Result<_>>()?;
        Ok(Self {
            snake: Snake::new(&vb.pp(0), c_in)?,
            conv: WnConv1d::new(
                &vb.pp(1),
                ConvShape::strided(c_in, c_out, stride),
                Direction::Transposed,
            )?,
            units,
        })
    }

    fn forward(&self, x: &Tensor, cancel: &CancelToken) -> cadence_core::Result<Tensor> {
        let mut x = self.conv.forward(&self.snake.forward(x)?)?;
        for u in &self.units {
            cancel.check()?;
            x = u.forward(&x)?;
        }
        Ok(x)
    }
}

/// The decoder (keys `decoder.layers.*`).
#[derive(Debug, Clone)]
pub struct Decoder {
    conv_in: WnConv1d,
    blocks: Vec<DecoderBlock>,
    snake: Snake,
    conv_out: WnConv1d,
    final_tanh: bool,
}

impl Decoder {
    /// Builds the decoder of `cfg`.
    pub fn new(vb: &VarBuilder, cfg: &DecoderConfig) -> Result<Self> {
        let vb = vb.pp("layers");
        let widths: Vec<usize> = std::iter::once(1)
            .chain(cfg.c_mults.iter().copied())
            .map(|m| m * cfg.channels)
            .collect();
        let n = cfg.strides.len();
        let conv_in = WnConv1d::new(
            &vb.pp(0),
            ConvShape::same(cfg.latent_dim, widths[n], 7, 1),
            Direction::Forward,
        )?;
        let blocks = (1..=n)
            .rev()
            .enumerate()
            .map(|(k, i)| {
                DecoderBlock::new(&vb.pp(k + 1), widths[i], widths[i - 1], cfg.strides[i - 1])
            })
            .collect::<Result<Vec<_>>>()?;
        let conv_out = WnConv1d::new(
            &vb.pp(n + 2),
            ConvShape {
                bias: false,
                ..ConvShape::same(widths[0], cfg.out_channels, 7, 1)
            },
            Direction::Forward,
        )?;
        Ok(Self {
            conv_in,
            blocks,
            snake: Snake::new(&vb.pp(n + 1), widths[0])?,
            conv_out,
            final_tanh: cfg.final_tanh,
        })
    }

    /// `[B, latent_dim, T] -> [B, C_out, 2048·T]` (unbounded unless `final_tanh`). `cancel`
    /// is checked before every block and residual unit.
    pub fn forward(&self, x: &Tensor, cancel: &CancelToken) -> cadence_core::Result<Tensor> {
        let mut x = self.conv_in.forward(x)?;
        for b in &self.blocks {
            cancel.check()?;
            x = b.forward(&x, cancel)?;
        }
        cancel.check()?;
        let y = self.conv_out.forward(&self.snake.forward(&x)?)?;
        Ok(if self.final_tanh { y.tanh()? } else { y })
    }
}
