//! Oobleck primitives: weight-normalised convolutions and SnakeBeta.

use std::sync::OnceLock;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// Which way a weight-normalised convolution runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `Conv1d`, weight `[out, in, k]`: normalised per output channel.
    Forward,
    /// `ConvTranspose1d`, weight `[in, out, k]`: normalised per **input** channel.
    Transposed,
}

/// A `weight_norm`-wrapped 1-D (transposed) convolution (keys `weight_g`, `weight_v`, `bias`).
///
/// The effective weight `g · v / ‖v‖` (norm over every axis but 0, no epsilon) is folded once,
/// on first use, so building the model never computes on its weights.
#[derive(Debug, Clone)]
pub struct WnConv1d {
    g: Tensor,
    v: Tensor,
    bias: Option<Tensor>,
    weight: OnceLock<Tensor>,
    direction: Direction,
    stride: usize,
    padding: usize,
    dilation: usize,
}

/// Shape of a [`WnConv1d`].
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride (the upsampling factor when transposed).
    pub stride: usize,
    /// Zero padding (forward) or cropping at both ends (transposed).
    pub padding: usize,
    /// Dilation (forward only).
    pub dilation: usize,
    /// Whether there is a bias.
    pub bias: bool,
}

impl ConvShape {
    /// Stride 1, length-preserving padding `dilation·(k-1)/2`, with bias.
    pub fn same(c_in: usize, c_out: usize, k: usize, dilation: usize) -> Self {
        Self {
            c_in,
            c_out,
            k,
            stride: 1,
            padding: dilation * (k - 1) / 2,
            dilation,
            bias: true,
        }
    }

    /// Kernel `2s`, stride `s`, padding `ceil(s/2)`: the resampling conv of a block.
    pub fn strided(c_in: usize, c_out: usize, s: usize) -> Self {
        Self {
            c_in,
            c_out,
            k: 2 * s,
            stride: s,
            padding: s.div_ceil(2),
            dilation: 1,
            bias: true,
        }
    }
}

impl WnConv1d {
    /// Loads `weight_g`, `weight_v` (and `bias`).
    pub fn new(vb: &VarBuilder, s: ConvShape, direction: Direction) -> Result<Self> {
        let (d0, d1) = match direction {
            Direction::Forward => (s.c_out, s.c_in),
            Direction::Transposed => (s.c_in, s.c_out),
        };
        Ok(Self {
            g: vb.get((d0, 1, 1), "weight_g")?,
            v: vb.get((d0, d1, s.k), "weight_v")?,
            bias: if s.bias {
                Some(vb.get(s.c_out, "bias")?)
            } else {
                None
            },
            weight: OnceLock::new(),
            direction,
            stride: s.stride,
            padding: s.padding,
            dilation: s.dilation,
        })
    }

    fn weight(&self) -> Result<&Tensor> {
        if let Some(w) = self.weight.get() {
            return Ok(w);
        }
        let norm = self.v.sqr()?.sum_keepdim((1, 2))?.sqrt()?;
        let w = self.v.broadcast_mul(&(&self.g / norm)?)?;
        Ok(self.weight.get_or_init(|| w))
    }

    /// `[B, C_in, L] -> [B, C_out, L']`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight()?;
        let y = match self.direction {
            Direction::Forward => x.conv1d(w, self.padding, self.stride, self.dilation, 1)?,
            Direction::Transposed => {
                // Unpadded transposed conv (candle's fast path), then crop `padding` each end.
                let y = x.conv_transpose1d(w, 0, 0, self.stride, 1, 1)?;
                let len = y.dim(2)?;
                y.narrow(2, self.padding, len - 2 * self.padding)?
            }
        };
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1))?),
            None => Ok(y),
        }
    }
}

/// SnakeBeta with log-scale parameters: `x + sin(x·e^α)² / (e^β + 1e-9)`, per channel.
#[derive(Debug, Clone)]
pub struct Snake {
    alpha: Tensor,
    beta: Tensor,
}

impl Snake {
    /// Keys `alpha`, `beta` (`[C]`, the logarithms).
    pub fn new(vb: &VarBuilder, c: usize) -> Result<Self> {
        Ok(Self {
            alpha: vb.get(c, "alpha")?,
            beta: vb.get(c, "beta")?,
        })
    }

    /// `[B, C, L]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let alpha = self.alpha.exp()?.reshape((1, (), 1))?;
        let inv_beta = (self.beta.exp()? + 1e-9)?.recip()?.reshape((1, (), 1))?;
        let s = x.broadcast_mul(&alpha)?.sin()?.sqr()?;
        x + s.broadcast_mul(&inv_beta)?
    }
}

/// `x + conv1×1(snake(conv7_d(snake(x))))` (keys `layers.{0,1,2,3}`).
#[derive(Debug, Clone)]
pub struct ResidualUnit {
    snake1: Snake,
    conv1: WnConv1d,
    snake2: Snake,
    conv2: WnConv1d,
}

impl ResidualUnit {
    /// Width `c`, dilation `d`.
    pub fn new(vb: &VarBuilder, c: usize, d: usize) -> Result<Self> {
        let vb = vb.pp("layers");
        Ok(Self {
            snake1: Snake::new(&vb.pp("0"), c)?,
            conv1: WnConv1d::new(&vb.pp("1"), ConvShape::same(c, c, 7, d), Direction::Forward)?,
            snake2: Snake::new(&vb.pp("2"), c)?,
            conv2: WnConv1d::new(&vb.pp("3"), ConvShape::same(c, c, 1, 1), Direction::Forward)?,
        })
    }

    /// `[B, C, L]`, length-preserving.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.snake1.forward(x)?)?;
        let h = self.conv2.forward(&self.snake2.forward(&h)?)?;
        x + h
    }
}

/// The dilations of the three residual units in every block.
pub const DILATIONS: [usize; 3] = [1, 3, 9];
