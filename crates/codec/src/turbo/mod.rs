//! Turbo-VAED, the default video decoder (latents -> RGB frames), windowed over time.
//!
//! The reference decodes overlapping windows of latent frames independently: the latent is
//! padded (repeating its last frame) to `first_chunk_size + k·step_size` frames; the first
//! window takes `first_chunk_size + 1` latents, each later one `step_size` latents plus one of
//! context on each side (the last: left only); 4 frames (one latent) are trimmed per overlapped
//! side and the padding's frames are dropped at the end. No state crosses windows, so
//! [`TurboVaed::decode_streaming`] decodes one window at a time and hands its final frames to the
//! caller before starting the next: memory scales with one window, not the clip.

pub mod blocks;
pub mod config;
pub mod decoder;

use std::ops::Range;
use std::path::Path;

use cadence_core::{CancelToken, Error, Result, TensorSpec};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

pub use config::TurboConfig;

use crate::loader::ckpt::LightningLayout;
use crate::loader::{record_specs, StateDict};
use crate::video::{LatentNorm, VideoChunk};

/// The released checkpoint's file name in its component folder (`weights.toml`).
pub const CHECKPOINT_FILE: &str = "checkpoint-340000.ckpt";
/// The released config's file name in the same folder.
pub const CONFIG_FILE: &str = "TurboV3-Wan22-TinyShallow_7_7.json";

/// How the released checkpoint wraps the decoder's weights.
pub const CHECKPOINT_LAYOUT: LightningLayout<'static> = LightningLayout {
    entry: "ema_state_dict",
    prefix: "module.",
    ignored: &["aligned_feature_projection_heads."],
};

/// One decoding window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Latent frames of the (padded) latent it decodes.
    pub latents: Range<usize>,
    /// Whether it starts the clip (its temporal upsamplers drop their first frame).
    pub first_chunk: bool,
    /// Output frames dropped at the front (overlap with the previous window).
    pub drop_front: usize,
    /// Output frames dropped at the back (overlap with the next window).
    pub drop_back: usize,
}

/// The windows of a decode, as the reference's `_sliding_window_decode` lays them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPlan {
    /// Copies of the last latent frame appended before windowing.
    pub padding: usize,
    /// The windows in order.
    pub windows: Vec<Window>,
    /// Frames of the final video (`1 + 4(T-1)`), after the padding's frames are dropped.
    pub frames: usize,
}

impl WindowPlan {
    /// The plan for `t` latent frames under `cfg`'s window sizes.
    pub fn new(t: usize, cfg: &TurboConfig) -> Self {
        let (first, step, r) = (
            cfg.first_chunk_size,
            cfg.step_size,
            cfg.temporal_compression_ratio,
        );
        let padding = if t < first {
            first - t
        } else {
            (step - (t - first) % step) % step
        };
        let n = t + padding;
        let mut windows = Vec::new();
        if n == first {
            windows.push(Window {
                latents: 0..n,
                first_chunk: true,
                drop_front: 0,
                drop_back: 0,
            });
        } else {
            windows.push(Window {
                latents: 0..first + 1,
                first_chunk: true,
                drop_front: 0,
                drop_back: r,
            });
            for i in (first..n).step_by(step) {
                let last = i + step == n;
                windows.push(Window {
                    latents: i - 1..if last { n } else { i + step + 1 },
                    first_chunk: false,
                    drop_front: r,
                    drop_back: if last { 0 } else { r },
                });
            }
        }
        Self {
            padding,
            windows,
            frames: 1 + r * t.saturating_sub(1),
        }
    }
}

/// Turbo-VAED: the default video decoder, Wan2.2 latents to RGB frames in temporal windows.
#[derive(Debug, Clone)]
pub struct TurboVaed {
    decoder: decoder::Decoder,
    cfg: TurboConfig,
    norm: LatentNorm,
    dtype: DType,
}

impl TurboVaed {
    /// Loads the Lightning checkpoint (`checkpoint-340000.ckpt`) with its JSON config, checking
    /// every key. `dtype` is the compute dtype (bf16 in production; f32 matches the fixtures).
    pub fn load(
        ckpt: impl AsRef<Path>,
        config_json: impl AsRef<Path>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (sd, cfg) = Self::open(ckpt, config_json)?;
        Self::from_state_dict(&sd, &cfg, dtype, device)
    }

    /// Every check [`TurboVaed::load`] makes (config, zip container, pickle rules, keys, shapes,
    /// dtypes) without reading a weight: what `cadence check` runs.
    pub fn check_files(ckpt: impl AsRef<Path>, config_json: impl AsRef<Path>) -> Result<()> {
        let (sd, cfg) = Self::open(ckpt, config_json)?;
        Self::verify(&sd, &cfg)
    }

    fn open(
        ckpt: impl AsRef<Path>,
        config_json: impl AsRef<Path>,
    ) -> Result<(StateDict, TurboConfig)> {
        let cfg = TurboConfig::from_file(config_json)?;
        Ok((
            StateDict::from_lightning_ckpt(ckpt, CHECKPOINT_LAYOUT)?,
            cfg,
        ))
    }

    /// Fails unless `sd` holds exactly the tensors of `cfg`, in types the model reads.
    pub fn verify(sd: &StateDict, cfg: &TurboConfig) -> Result<()> {
        sd.verify(&Self::tensor_specs(cfg)?)
    }

    /// Builds from any [`StateDict`] with the reference's key names (`decoder.*`).
    pub fn from_state_dict(
        sd: &StateDict,
        cfg: &TurboConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::verify(sd, cfg)?;
        Self::new(&sd.var_builder(dtype, device), cfg)
    }

    /// Every tensor the model loads for `cfg`, derived without allocating weights.
    pub fn tensor_specs(cfg: &TurboConfig) -> Result<Vec<TensorSpec>> {
        record_specs(|vb| Self::new(&vb, cfg))
    }

    /// Builds the model from a `VarBuilder` (its dtype is the compute dtype).
    pub fn new(vb: &VarBuilder, cfg: &TurboConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            decoder: decoder::Decoder::new(&vb.pp("decoder"), cfg)?,
            cfg: cfg.clone(),
            norm: LatentNorm::new(DType::F32, vb.device())?,
            dtype: vb.dtype(),
        })
    }

    /// The window layout for a latent of `t` frames.
    pub fn plan(&self, t: usize) -> WindowPlan {
        WindowPlan::new(t, &self.cfg)
    }

    /// De-normalises (in f32, as the reference) and pads the latent as the plan says; the
    /// result is in the compute dtype.
    pub fn prepare(&self, latent: &Tensor) -> Result<(Tensor, WindowPlan)> {
        let (_, c, t, _, _) = latent.dims5()?;
        if c != self.cfg.latent_channels || t == 0 {
            return Err(Error::InvalidInput(format!(
                "Turbo-VAED decodes a [B, {}, T>=1, h, w] latent, got {:?}",
                self.cfg.latent_channels,
                latent.dims()
            )));
        }
        let plan = self.plan(t);
        let z = self.norm.denormalize(&latent.to_dtype(self.dtype)?)?;
        let z = if plan.padding > 0 {
            z.pad_with_same(2, 0, plan.padding)?
        } else {
            z
        };
        Ok((z, plan))
    }

    /// Decodes one window of de-normalised latents (untrimmed output, compute dtype); stops
    /// with [`Error::Cancelled`] within one decoder block of `cancel` being set.
    pub fn decode_window(
        &self,
        z: &Tensor,
        first_chunk: bool,
        cancel: &CancelToken,
    ) -> Result<Tensor> {
        self.decoder.forward(z, first_chunk, cancel)
    }

    /// Decodes a normalised latent `[B, 48, T, h, w]` window by window, handing each window's
    /// final frames (float32 `[B, 3, t, 16h, 16w]`, not clamped) to `on_chunk` in order. Stops
    /// with [`Error::Cancelled`] within one decoder block of `cancel` being set.
    pub fn decode_streaming(
        &self,
        latent: &Tensor,
        cancel: &CancelToken,
        mut on_chunk: impl FnMut(VideoChunk) -> Result<()>,
    ) -> Result<()> {
        let (z, plan) = self.prepare(latent)?;
        let mut emitted = 0;
        for w in &plan.windows {
            let zw = z.narrow(2, w.latents.start, w.latents.len())?;
            let out = self.decode_window(&zw, w.first_chunk, cancel)?;
            let len = out.dim(2)?;
            let keep = len
                .checked_sub(w.drop_front + w.drop_back)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "window of {} latents gave {len} frames, fewer than the overlap trims",
                        w.latents.len()
                    ))
                })?
                .min(plan.frames - emitted);
            if keep == 0 {
                break;
            }
            let video = out.narrow(2, w.drop_front, keep)?.to_dtype(DType::F32)?;
            on_chunk(VideoChunk {
                first_frame: emitted,
                video,
            })?;
            emitted += keep;
        }
        Ok(())
    }

    /// [`TurboVaed::decode_streaming`] collected into one `[B, 3, 1 + 4(T-1), 16h, 16w]` tensor.
    pub fn decode(&self, latent: &Tensor, cancel: &CancelToken) -> Result<Tensor> {
        let mut chunks = Vec::new();
        self.decode_streaming(latent, cancel, |c| {
            chunks.push(c.video);
            Ok(())
        })?;
        Ok(Tensor::cat(&chunks, 2)?)
    }
}
