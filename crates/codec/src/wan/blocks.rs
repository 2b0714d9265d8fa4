//! Wan2.2 VAE building blocks, run chunk by chunk with per-layer temporal state.
//!
//! The reference processes time in chunks (encode: 1 frame, then 4 at a time; decode: one latent
//! frame at a time). Every layer that looks back in time keeps state between chunks in a
//! [`StreamState`] slot; layers take their slot in a fixed order each chunk (the order of the
//! forward pass), exactly like the reference's `feat_cache`/`feat_idx`.

use cadence_core::CancelToken;
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use crate::conv::Conv;
use crate::video::frame_groups::map_frames;
use crate::video::upsample::{interleave_halves, upsample_nearest_2x};
use cadence_kernels::conv3d::{Conv3dConfig, Dims3};

/// What a temporal layer remembers between chunks.
#[derive(Debug, Clone, Default)]
pub enum Slot {
    /// Nothing yet (the first chunk).
    #[default]
    Empty,
    /// The layer ran once and remembers only that (the reference's `"Rep"`).
    Started,
    /// The last frames of the layer's input.
    Frames(Tensor),
}

/// Per-layer state of one streaming pass (one encode or one decode).
#[derive(Debug, Default)]
pub struct StreamState {
    slots: Vec<Slot>,
    cursor: usize,
}

impl StreamState {
    /// Starts the next chunk: layers take their slots from the first one again.
    pub fn begin_chunk(&mut self) {
        self.cursor = 0;
    }

    fn next(&mut self) -> &mut Slot {
        if self.cursor == self.slots.len() {
            self.slots.push(Slot::Empty);
        }
        self.cursor += 1;
        &mut self.slots[self.cursor - 1]
    }
}

/// The last `n` frames of `x` (fewer if it is shorter), as an owned contiguous tensor.
fn last_frames(x: &Tensor, n: usize) -> Result<Tensor> {
    let t = x.dim(2)?;
    let n = n.min(t);
    x.narrow(2, t - n, n)?.contiguous()
}

/// Wan's `RMS_norm`, in fact an L2 normalisation over the channel axis:
/// `x / max(||x||_2, 1e-12) * sqrt(C) * gamma` (no mean, no epsilon inside the root).
#[derive(Debug, Clone)]
pub struct ChannelL2Norm {
    gamma: Tensor,
    scale: f64,
}

impl ChannelL2Norm {
    /// `gamma` stored as `[C, 1, 1, 1]` (video) or `[C, 1, 1]` (per-frame attention).
    pub fn new(vb: &VarBuilder, c: usize, per_frame: bool) -> Result<Self> {
        let gamma = if per_frame {
            vb.get((c, 1, 1), "gamma")?
        } else {
            vb.get((c, 1, 1, 1), "gamma")?
        };
        Ok(Self {
            gamma,
            scale: (c as f64).sqrt(),
        })
    }

    /// Normalises `[B, C, T, H, W]` over axis 1 (computed in f32 a few frames at a time,
    /// returned in `x`'s dtype).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        map_frames(x, |x| self.forward_group(x))
    }

    fn forward_group(&self, x: &Tensor) -> Result<Tensor> {
        let xf = x.to_dtype(DType::F32)?;
        let norm = xf.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12)?;
        let mut shape = vec![1; x.rank()];
        shape[1] = self.gamma.elem_count();
        let gamma = self.gamma.to_dtype(DType::F32)?.reshape(shape)?;
        xf.broadcast_div(&norm)?
            .affine(self.scale, 0.0)?
            .broadcast_mul(&gamma)?
            .to_dtype(x.dtype())
    }
}

/// A Conv3d whose temporal padding is all in front (zeros), fed by the previous chunk's frames.
#[derive(Debug, Clone)]
pub struct CausalConv3d {
    conv: Conv,
    /// Zero frames in front when nothing is cached (`2 * padding_t`).
    front: usize,
    /// Spatial zero padding.
    pad: usize,
}

impl CausalConv3d {
    /// `k×k×k` with padding `k/2` (3×3×3 with 2 causal frames, or 1×1×1 with none).
    pub fn cube(vb: &VarBuilder, c_in: usize, c_out: usize, k: usize) -> Result<Self> {
        Ok(Self {
            conv: Conv::conv3d(vb, c_in, c_out, (k, k, k))?,
            front: 2 * (k / 2),
            pad: k / 2,
        })
    }

    /// Temporal-only kernel `(3, 1, 1)`; `padded` gives it 2 causal zero frames.
    pub fn temporal(vb: &VarBuilder, c_in: usize, c_out: usize, padded: bool) -> Result<Self> {
        Ok(Self {
            conv: Conv::conv3d(vb, c_in, c_out, (3, 1, 1))?,
            front: if padded { 2 } else { 0 },
            pad: 0,
        })
    }

    /// Without state: `front` zero frames, then the convolution.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, None, Dims3::all(1))
    }

    /// With the frames `cache` prepended in place of as many zero frames.
    pub fn run(&self, x: &Tensor, cache: Option<&Tensor>, stride: Dims3) -> Result<Tensor> {
        let (x, cached) = match cache {
            Some(c) => (Tensor::cat(&[c, x], 2)?, c.dim(2)?),
            None => (x.clone(), 0),
        };
        let zeros = self.front.saturating_sub(cached);
        let x = if zeros > 0 {
            x.pad_with_zeros(2, zeros, 0)?
        } else {
            x
        };
        let cfg = Conv3dConfig {
            stride,
            ..Conv3dConfig::padded(Dims3::new(0, self.pad, self.pad))
        };
        self.conv.forward(&x, cfg)
    }

    /// The streaming form: prepends the slot's frames, then stores the last two input frames
    /// (completed with the previous last frame when the chunk has one frame).
    pub fn forward_cached(&self, x: &Tensor, state: &mut StreamState) -> Result<Tensor> {
        if self.front == 0 {
            return self.forward(x);
        }
        let slot = state.next();
        let prev = match slot {
            Slot::Frames(c) => Some(c.clone()),
            _ => None,
        };
        let keep = match (&prev, x.dim(2)?) {
            (Some(p), 1) => Tensor::cat(&[&last_frames(p, 1)?, x], 2)?,
            _ => last_frames(x, 2)?,
        };
        *slot = Slot::Frames(keep);
        self.run(x, prev.as_ref(), Dims3::all(1))
    }
}

/// `out = residual(x) + shortcut(x)`; residual = norm, SiLU, conv, norm, SiLU, conv.
#[derive(Debug, Clone)]
pub struct ResidualBlock {
    norm1: ChannelL2Norm,
    conv1: CausalConv3d,
    norm2: ChannelL2Norm,
    conv2: CausalConv3d,
    shortcut: Option<CausalConv3d>,
}

impl ResidualBlock {
    /// Keys `residual.{0,2,3,6}.*` and `shortcut.*` (only when `c_in != c_out`).
    pub fn new(vb: &VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        let r = vb.pp("residual");
        Ok(Self {
            norm1: ChannelL2Norm::new(&r.pp("0"), c_in, false)?,
            conv1: CausalConv3d::cube(&r.pp("2"), c_in, c_out, 3)?,
            norm2: ChannelL2Norm::new(&r.pp("3"), c_out, false)?,
            conv2: CausalConv3d::cube(&r.pp("6"), c_out, c_out, 3)?,
            shortcut: if c_in != c_out {
                Some(CausalConv3d::cube(&vb.pp("shortcut"), c_in, c_out, 1)?)
            } else {
                None
            },
        })
    }

    /// One chunk.
    /// `cancel` is checked before each of the two convolutions (at 1080p one takes about as
    /// long as the 1 s a cancellation may take).
    pub fn forward(
        &self,
        x: &Tensor,
        state: &mut StreamState,
        cancel: &CancelToken,
    ) -> cadence_core::Result<Tensor> {
        // Scoped so that each intermediate is freed as soon as it is consumed.
        let h = {
            let n = {
                cancel.check()?;
                let h = self
                    .conv1
                    .forward_cached(&self.norm1.forward(x)?.silu()?, state)?;
                self.norm2.forward(&h)?.silu()?
            };
            cancel.check()?;
            self.conv2.forward_cached(&n, state)?
        };
        Ok(match &self.shortcut {
            Some(s) => (h + s.forward(x)?)?,
            None => (h + x)?,
        })
    }
}

/// Single-head self-attention over the positions of each frame, plus the residual.
#[derive(Debug, Clone)]
pub struct AttentionBlock {
    norm: ChannelL2Norm,
    to_qkv: Conv,
    proj: Conv,
    c: usize,
}

impl AttentionBlock {
    /// Keys `norm.gamma`, `to_qkv.*` (1×1 conv to 3C), `proj.*` (1×1 conv).
    pub fn new(vb: &VarBuilder, c: usize) -> Result<Self> {
        Ok(Self {
            norm: ChannelL2Norm::new(&vb.pp("norm"), c, true)?,
            to_qkv: Conv::conv2d(&vb.pp("to_qkv"), c, 3 * c, 1)?,
            proj: Conv::conv2d(&vb.pp("proj"), c, c, 1)?,
            c,
        })
    }

    /// `[B, C, T, H, W]`, every frame independently.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t, h, w) = x.dims5()?;
        let n = self.norm.forward(x)?;
        let qkv = self.to_qkv.forward_same(&n, 0)?; // [B, 3C, T, H, W]
                                                    // -> [B*T, 3C, H*W]
        let qkv = qkv
            .permute((0, 2, 1, 3, 4))?
            .reshape((b * t, 3 * c, h * w))?;
        let q = qkv.narrow(1, 0, c)?.transpose(1, 2)?.contiguous()?; // [BT, N, C]
        let k = qkv.narrow(1, c, c)?.contiguous()?; // [BT, C, N]
        let v = qkv.narrow(1, 2 * c, c)?.transpose(1, 2)?.contiguous()?; // [BT, N, C]
        let scores = (q.matmul(&k)? * (1.0 / (self.c as f64).sqrt()))?;
        let attn =
            candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(v.dtype())?;
        let o = attn.matmul(&v)?; // [BT, N, C]
        let o = o
            .transpose(1, 2)?
            .reshape((b, t, c, h, w))?
            .permute((0, 2, 1, 3, 4))?
            .contiguous()?;
        self.proj.forward_same(&o, 0)? + x
    }
}

/// The spatial/temporal resampler of an encoder or decoder stage.
#[derive(Debug, Clone)]
pub enum Resample {
    /// Zero-pad right/bottom by one, 3×3 stride-2 conv.
    Down2d(Conv),
    /// [`Resample::Down2d`], then a stride-2 `(3,1,1)` temporal conv over the remembered frame
    /// and the chunk (skipped for the first chunk).
    Down3d(Conv, CausalConv3d),
    /// Nearest ×2, 3×3 conv.
    Up2d(Conv),
    /// Causal `(3,1,1)` temporal conv doubling the channels into twice the frames (skipped for
    /// the first chunk, zero history on the second), then [`Resample::Up2d`].
    Up3d(CausalConv3d, Conv),
}

impl Resample {
    /// Encoder downsampler: keys `resample.1.*` and, with `temporal`, `time_conv.*`.
    pub fn down(vb: &VarBuilder, c: usize, temporal: bool) -> Result<Self> {
        let spatial = Conv::conv2d(&vb.pp("resample.1"), c, c, 3)?;
        Ok(if temporal {
            Self::Down3d(
                spatial,
                CausalConv3d::temporal(&vb.pp("time_conv"), c, c, false)?,
            )
        } else {
            Self::Down2d(spatial)
        })
    }

    /// Decoder upsampler: keys `resample.1.*` and, with `temporal`, `time_conv.*` (C -> 2C).
    pub fn up(vb: &VarBuilder, c: usize, temporal: bool) -> Result<Self> {
        let spatial = Conv::conv2d(&vb.pp("resample.1"), c, c, 3)?;
        Ok(if temporal {
            Self::Up3d(
                CausalConv3d::temporal(&vb.pp("time_conv"), c, 2 * c, true)?,
                spatial,
            )
        } else {
            Self::Up2d(spatial)
        })
    }

    /// One chunk.
    pub fn forward(&self, x: &Tensor, state: &mut StreamState) -> Result<Tensor> {
        match self {
            Self::Down2d(conv) => down_spatial(conv, x),
            Self::Down3d(conv, time_conv) => {
                let x = down_spatial(conv, x)?;
                let slot = state.next();
                match slot {
                    Slot::Frames(prev) => {
                        let prev = last_frames(prev, 1)?;
                        *slot = Slot::Frames(last_frames(&x, 1)?);
                        time_conv.run(&x, Some(&prev), Dims3::new(2, 1, 1))
                    }
                    _ => {
                        *slot = Slot::Frames(last_frames(&x, 1)?);
                        Ok(x)
                    }
                }
            }
            Self::Up2d(conv) => conv.forward_same(&upsample_nearest_2x(x)?, 1),
            Self::Up3d(time_conv, conv) => {
                let slot = state.next();
                let x = match slot {
                    Slot::Empty => {
                        *slot = Slot::Started;
                        x.clone()
                    }
                    Slot::Started => {
                        let keep = last_frames(x, 2)?;
                        let keep = if keep.dim(2)? < 2 {
                            keep.pad_with_zeros(2, 1, 0)?
                        } else {
                            keep
                        };
                        *slot = Slot::Frames(keep);
                        interleave_halves(&time_conv.run(x, None, Dims3::all(1))?)?
                    }
                    Slot::Frames(prev) => {
                        let prev = prev.clone();
                        let keep = if x.dim(2)? < 2 {
                            Tensor::cat(&[&last_frames(&prev, 1)?, x], 2)?
                        } else {
                            last_frames(x, 2)?
                        };
                        *slot = Slot::Frames(keep);
                        interleave_halves(&time_conv.run(x, Some(&prev), Dims3::all(1))?)?
                    }
                };
                conv.forward_same(&upsample_nearest_2x(&x)?, 1)
            }
        }
    }
}

fn down_spatial(conv: &Conv, x: &Tensor) -> Result<Tensor> {
    let x = x.pad_with_zeros(3, 0, 1)?.pad_with_zeros(4, 0, 1)?;
    conv.forward(
        &x,
        Conv3dConfig {
            stride: Dims3::new(1, 2, 2),
            ..Conv3dConfig::default()
        },
    )
}

/// Encoder shortcut: zero-pad time in front to a multiple of `ft`, fold `ft×fs×fs` blocks into
/// channels (order `((c*ft + dt)*fs + dh)*fs + dw`) and average groups of `in*F/out` channels.
#[derive(Debug, Clone, Copy)]
pub struct AvgDown3d {
    c_out: usize,
    ft: usize,
    fs: usize,
}

impl AvgDown3d {
    /// Shortcut for `c_in -> c_out` with factors `ft`, `fs`.
    pub fn new(c_out: usize, ft: usize, fs: usize) -> Self {
        Self { c_out, ft, fs }
    }

    /// Stateless: each chunk is padded on its own.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (ft, fs) = (self.ft, self.fs);
        let t0 = x.dim(2)?;
        let pad = (ft - t0 % ft) % ft;
        let x = if pad > 0 {
            x.pad_with_zeros(2, pad, 0)?
        } else {
            x.clone()
        };
        let (b, c, t, h, w) = x.dims5()?;
        let (t2, h2, w2) = (t / ft, h / fs, w / fs);
        let f = ft * fs * fs;
        let group = c * f / self.c_out;
        x.reshape(vec![b, c, t2, ft, h2, fs, w2, fs])?
            .permute(vec![0, 1, 3, 5, 7, 2, 4, 6])?
            .reshape(vec![b, self.c_out, group, t2, h2, w2])?
            .mean(2)
    }
}

/// Decoder shortcut: repeat each channel `out*F/in` times, unfold `ft×fs×fs` blocks from the
/// channels; on the first chunk drop the first `ft - 1` frames.
#[derive(Debug, Clone, Copy)]
pub struct DupUp3d {
    c_out: usize,
    ft: usize,
    fs: usize,
}

impl DupUp3d {
    /// Shortcut for `c_in -> c_out` with factors `ft`, `fs`.
    pub fn new(c_out: usize, ft: usize, fs: usize) -> Self {
        Self { c_out, ft, fs }
    }

    /// Stateless apart from `first_chunk`.
    pub fn forward(&self, x: &Tensor, first_chunk: bool) -> Result<Tensor> {
        let (ft, fs) = (self.ft, self.fs);
        let (b, c, t, h, w) = x.dims5()?;
        let repeats = self.c_out * ft * fs * fs / c;
        let y = x
            .unsqueeze(2)?
            .broadcast_as(vec![b, c, repeats, t, h, w])?
            .reshape(vec![b, self.c_out, ft, fs, fs, t, h, w])?
            .permute(vec![0, 1, 5, 2, 6, 3, 7, 4])?
            .reshape((b, self.c_out, t * ft, h * fs, w * fs))?;
        if first_chunk && ft > 1 {
            y.narrow(2, ft - 1, t * ft - (ft - 1))
        } else {
            Ok(y)
        }
    }
}

/// `RMS_norm -> SiLU -> CausalConv3d 3×3×3` output head (keys `head.0.gamma`, `head.2.*`).
#[derive(Debug, Clone)]
pub struct Head {
    norm: ChannelL2Norm,
    conv: CausalConv3d,
}

impl Head {
    /// Head from `c_in` to `c_out` channels.
    pub fn new(vb: &VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Self {
            norm: ChannelL2Norm::new(&vb.pp("0"), c_in, false)?,
            conv: CausalConv3d::cube(&vb.pp("2"), c_in, c_out, 3)?,
        })
    }

    /// One chunk.
    pub fn forward(&self, x: &Tensor, state: &mut StreamState) -> Result<Tensor> {
        self.conv
            .forward_cached(&self.norm.forward(x)?.silu()?, state)
    }
}

/// `ResidualBlock, AttentionBlock, ResidualBlock` (keys `middle.{0,1,2}`).
#[derive(Debug, Clone)]
pub struct Middle {
    res1: ResidualBlock,
    attn: AttentionBlock,
    res2: ResidualBlock,
}

impl Middle {
    /// Middle block of width `c`.
    pub fn new(vb: &VarBuilder, c: usize) -> Result<Self> {
        Ok(Self {
            res1: ResidualBlock::new(&vb.pp("0"), c, c)?,
            attn: AttentionBlock::new(&vb.pp("1"), c)?,
            res2: ResidualBlock::new(&vb.pp("2"), c, c)?,
        })
    }

    /// One chunk.
    pub fn forward(
        &self,
        x: &Tensor,
        state: &mut StreamState,
        cancel: &CancelToken,
    ) -> cadence_core::Result<Tensor> {
        let x = self.res1.forward(x, state, cancel)?;
        let x = self.attn.forward(&x)?;
        self.res2.forward(&x, state, cancel)
    }
}
