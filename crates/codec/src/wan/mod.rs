//! The Wan2.2 VAE (Wan-AI/Wan2.2-TI2V-5B `Wan2.2_VAE.pth`): encoder for the conditioning image
//! and for video input, decoder as the fallback to Turbo-VAED.
//!
//! Both directions stream over time exactly as the reference does: the encoder takes the first
//! frame alone and then groups of 4 frames, the decoder one latent frame at a time, each layer
//! carrying its temporal state from chunk to chunk. Activations therefore scale with one chunk,
//! not the clip, and decoded frames are handed out chunk by chunk ([`WanVae::decode_streaming`]).

pub mod blocks;
pub mod config;
pub mod decoder;
pub mod encoder;

use std::path::Path;

use cadence_core::{CancelToken, Error, Result, TensorSpec};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

pub use config::WanConfig;

use self::blocks::{CausalConv3d, StreamState};
use crate::loader::{record_specs, StateDict};
use crate::video::{patchify, unpatchify, LatentNorm, VideoChunk};

/// The released checkpoint's file name in its component folder (`weights.toml`).
pub const CHECKPOINT_FILE: &str = "Wan2.2_VAE.pth";

/// Everything one encode computes, for inspection (the latent is what callers want).
#[derive(Debug, Clone)]
pub struct WanEncoding {
    /// Encoder output per chunk, `[B, 2·z, 1, h, w]` each.
    pub encoder_chunks: Vec<Tensor>,
    /// `conv1` over the concatenated chunks, `[B, 2·z, T_lat, h, w]` (mu, then log-variance).
    pub conv1_out: Tensor,
    /// The normalised latent mean, float32 `[B, z, T_lat, h, w]`.
    pub latent: Tensor,
}

/// The Wan2.2 VAE.
#[derive(Debug, Clone)]
pub struct WanVae {
    encoder: encoder::Encoder,
    decoder: decoder::Decoder,
    conv1: CausalConv3d,
    conv2: CausalConv3d,
    norm: LatentNorm,
    dtype: DType,
}

impl WanVae {
    /// Loads `Wan2.2_VAE.pth`, checking its keys against `cfg` first. `dtype` is the compute
    /// dtype (bf16 in production; f32 matches the reference fixtures).
    pub fn load(
        pth: impl AsRef<Path>,
        cfg: &WanConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::from_state_dict(&StateDict::from_pth(pth)?, cfg, dtype, device)
    }

    /// Every check [`WanVae::load`] makes (zip container, pickle rules, keys, shapes, dtypes)
    /// without reading a weight: what `cadence check` runs.
    pub fn check_files(pth: impl AsRef<Path>, cfg: &WanConfig) -> Result<()> {
        Self::verify(&StateDict::from_pth(pth)?, cfg)
    }

    /// Fails unless `sd` holds exactly the tensors of `cfg`, in types the model reads.
    pub fn verify(sd: &StateDict, cfg: &WanConfig) -> Result<()> {
        sd.verify(&Self::tensor_specs(cfg)?)
    }

    /// Builds from any [`StateDict`] holding the reference's key names.
    pub fn from_state_dict(
        sd: &StateDict,
        cfg: &WanConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::verify(sd, cfg)?;
        Self::new(&sd.var_builder(dtype, device), cfg)
    }

    /// Every tensor the model loads for `cfg`, derived without allocating weights.
    pub fn tensor_specs(cfg: &WanConfig) -> Result<Vec<TensorSpec>> {
        record_specs(|vb| Self::new(&vb, cfg))
    }

    /// Builds the model from a `VarBuilder` (its dtype is the compute dtype).
    pub fn new(vb: &VarBuilder, cfg: &WanConfig) -> Result<Self> {
        cfg.validate()?;
        let z = cfg.z_dim;
        Ok(Self {
            encoder: encoder::Encoder::new(&vb.pp("encoder"), cfg)?,
            decoder: decoder::Decoder::new(&vb.pp("decoder"), cfg)?,
            conv1: CausalConv3d::cube(&vb.pp("conv1"), 2 * z, 2 * z, 1)?,
            conv2: CausalConv3d::cube(&vb.pp("conv2"), z, z, 1)?,
            norm: LatentNorm::new(vb.dtype(), vb.device())?,
            dtype: vb.dtype(),
        })
    }

    /// Encodes an image `[B, 3, H, W]` (or `[B, 3, 1, H, W]`) in `[-1, 1]` to the normalised
    /// latent `[B, 48, 1, H/16, W/16]` (float32), as the TI2V conditioning path does. Stops
    /// with [`Error::Cancelled`] within one convolution of `cancel` being set.
    pub fn encode_image(&self, image: &Tensor, cancel: &CancelToken) -> Result<Tensor> {
        let video = match image.rank() {
            4 => image.unsqueeze(2)?,
            5 => image.clone(),
            r => {
                return Err(Error::InvalidInput(format!(
                    "encode_image takes [B, 3, H, W] or [B, 3, 1, H, W], got rank {r}"
                )))
            }
        };
        self.encode_video(&video, cancel)
    }

    /// Encodes video `[B, 3, T, H, W]` in `[-1, 1]` (H, W multiples of 16) to the normalised
    /// latent mean `[B, 48, 1 + (T-1)/4, H/16, W/16]` (float32). Frames after the last complete
    /// group of 4 are ignored, as in the reference.
    pub fn encode_video(&self, video: &Tensor, cancel: &CancelToken) -> Result<Tensor> {
        Ok(self.encode_detailed(video, cancel)?.latent)
    }

    /// [`WanVae::encode_video`] with its intermediate results.
    pub fn encode_detailed(&self, video: &Tensor, cancel: &CancelToken) -> Result<WanEncoding> {
        let (_, c, t, h, w) = video.dims5()?;
        if c != 3 || t == 0 || h % 16 != 0 || w % 16 != 0 {
            return Err(Error::InvalidInput(format!(
                "Wan encode takes [B, 3, T>=1, H, W] with H and W multiples of 16, got {:?}",
                video.dims()
            )));
        }
        let x = patchify(&video.to_dtype(self.dtype)?)?;
        let chunks = 1 + (t - 1) / 4;
        let mut state = StreamState::default();
        let mut encoder_chunks = Vec::with_capacity(chunks);
        for i in 0..chunks {
            let chunk = if i == 0 {
                x.narrow(2, 0, 1)?
            } else {
                x.narrow(2, 1 + 4 * (i - 1), 4)?
            };
            encoder_chunks.push(self.encoder.forward(&chunk, &mut state, cancel)?);
        }
        let conv1_out = self.conv1.forward(&Tensor::cat(&encoder_chunks, 2)?)?;
        let z = conv1_out.dim(1)? / 2;
        let latent = self
            .norm
            .normalize(&conv1_out.narrow(1, 0, z)?)?
            .to_dtype(DType::F32)?;
        Ok(WanEncoding {
            encoder_chunks,
            conv1_out,
            latent,
        })
    }

    /// Decodes a normalised latent `[B, 48, T, h, w]` to video `[B, 3, 1 + 4(T-1), 16h, 16w]`,
    /// float32, clamped to `[-1, 1]`. Holds the whole clip: prefer
    /// [`WanVae::decode_streaming`] for long or large clips.
    pub fn decode(&self, latent: &Tensor, cancel: &CancelToken) -> Result<Tensor> {
        let mut chunks = Vec::new();
        self.decode_streaming(latent, cancel, |c| {
            chunks.push(c.video);
            Ok(())
        })?;
        Ok(Tensor::cat(&chunks, 2)?)
    }

    /// Decodes chunk by chunk, handing each run of final frames (1 for the first latent frame, 4
    /// for every later one; float32 `[B, 3, t, 16h, 16w]` clamped to `[-1, 1]`) to `on_chunk`.
    /// Stops with [`Error::Cancelled`] within one convolution of `cancel` being set.
    pub fn decode_streaming(
        &self,
        latent: &Tensor,
        cancel: &CancelToken,
        mut on_chunk: impl FnMut(VideoChunk) -> Result<()>,
    ) -> Result<()> {
        let mut first_frame = 0;
        self.decode_patches(latent, cancel, |patches| {
            let video = unpatchify(patches)?
                .to_dtype(DType::F32)?
                .clamp(-1f32, 1f32)?;
            let chunk = VideoChunk { first_frame, video };
            first_frame += chunk.len();
            on_chunk(chunk)
        })
    }

    /// The decoder's raw output per latent frame, `[B, 12, t, 8h, 8w]` in the compute dtype
    /// (before unpatchify and clamping).
    pub fn decode_patches(
        &self,
        latent: &Tensor,
        cancel: &CancelToken,
        mut on_patches: impl FnMut(&Tensor) -> Result<()>,
    ) -> Result<()> {
        let (_, c, t, _, _) = latent.dims5()?;
        if c != crate::video::latent_norm::LATENT_CHANNELS || t == 0 {
            return Err(Error::InvalidInput(format!(
                "Wan decode takes a [B, 48, T>=1, h, w] latent, got {:?}",
                latent.dims()
            )));
        }
        let z = self.norm.denormalize(&latent.to_dtype(self.dtype)?)?;
        let x = self.conv2.forward(&z)?;
        let mut state = StreamState::default();
        for i in 0..t {
            let out = self
                .decoder
                .forward(&x.narrow(2, i, 1)?, &mut state, i == 0, cancel)?;
            on_patches(&out)?;
        }
        Ok(())
    }
}
