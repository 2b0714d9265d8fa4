//! Stable Audio Open 1.0's "Oobleck" audio VAE: the decoder turns audio latents into the
//! waveform, the encoder turns user audio into latents (audio-driven mode). Runs in float32.

pub mod config;
pub mod decoder;
pub mod encoder;
pub mod layers;

use std::collections::VecDeque;
use std::path::Path;

use cadence_core::{CancelToken, Error, Result, TensorSpec};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

pub use config::OobleckConfig;

use crate::loader::{record_specs, StateDict};

/// Stable Audio Open's checkpoint file name in its component folder (`weights.toml`).
pub const CHECKPOINT_FILE: &str = "model.safetensors";
/// Its config's file name in the same folder.
pub const CONFIG_FILE: &str = "model_config.json";

/// Key prefix of the VAE inside Stable Audio Open's `model.safetensors`.
pub const CHECKPOINT_PREFIX: &str = "pretransform.model.";

/// Where the VAE bottleneck's Gaussian noise comes from. The reference samples with
/// `torch.randn_like`; callers choose determinism here.
pub trait BottleneckNoise {
    /// Standard-normal noise of `shape` (f32) on `device`.
    fn sample(&mut self, shape: &[usize], device: &Device) -> Result<Tensor>;
}

/// No noise: encode returns the bottleneck mean.
#[derive(Debug, Clone, Copy, Default)]
pub struct MeanOnly;

impl BottleneckNoise for MeanOnly {
    fn sample(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        Ok(Tensor::zeros(shape, DType::F32, device)?)
    }
}

/// Fresh noise from candle's random generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomNoise;

impl BottleneckNoise for RandomNoise {
    fn sample(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        Ok(Tensor::randn(0f32, 1f32, shape, device)?)
    }
}

/// Replays given noise tensors in order (for reproducing a recorded run).
#[derive(Debug, Clone, Default)]
pub struct ReplayNoise(VecDeque<Tensor>);

impl ReplayNoise {
    /// Noise to hand out, first to last.
    pub fn new(noise: impl IntoIterator<Item = Tensor>) -> Self {
        Self(noise.into_iter().collect())
    }
}

impl BottleneckNoise for ReplayNoise {
    fn sample(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        let t = self
            .0
            .pop_front()
            .ok_or_else(|| Error::InvalidInput("replayed bottleneck noise is exhausted".into()))?;
        if t.dims() != shape {
            return Err(Error::InvalidInput(format!(
                "replayed noise has shape {:?}, the bottleneck needs {shape:?}",
                t.dims()
            )));
        }
        Ok(t.to_dtype(DType::F32)?.to_device(device)?)
    }
}

/// The Oobleck autoencoder: 44.1 kHz stereo audio to and from the DiT's audio latents.
#[derive(Debug, Clone)]
pub struct Oobleck {
    encoder: encoder::Encoder,
    decoder: decoder::Decoder,
    cfg: OobleckConfig,
    device: Device,
}

impl Oobleck {
    /// Loads the VAE from Stable Audio Open's `model.safetensors` (keys under
    /// `pretransform.model.`) and `model_config.json`, checking every key.
    pub fn load(
        model: impl AsRef<Path>,
        model_config: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self> {
        let (sd, cfg) = Self::open(model, model_config)?;
        Self::from_state_dict(&sd, &cfg, device)
    }

    /// Every check [`Oobleck::load`] makes (config, safetensors header, keys, shapes, dtypes)
    /// without reading a weight: what `cadence check` runs.
    pub fn check_files(model: impl AsRef<Path>, model_config: impl AsRef<Path>) -> Result<()> {
        let (sd, cfg) = Self::open(model, model_config)?;
        Self::verify(&sd, &cfg)
    }

    fn open(
        model: impl AsRef<Path>,
        model_config: impl AsRef<Path>,
    ) -> Result<(StateDict, OobleckConfig)> {
        let cfg = OobleckConfig::from_model_config(model_config)?;
        Ok((StateDict::from_safetensors(model, CHECKPOINT_PREFIX)?, cfg))
    }

    /// Fails unless `sd` holds exactly the tensors of `cfg`, in types the model reads.
    pub fn verify(sd: &StateDict, cfg: &OobleckConfig) -> Result<()> {
        sd.verify(&Self::tensor_specs(cfg)?)
    }

    /// Builds from any [`StateDict`] with the reference's key names (`encoder.*`, `decoder.*`).
    pub fn from_state_dict(sd: &StateDict, cfg: &OobleckConfig, device: &Device) -> Result<Self> {
        Self::verify(sd, cfg)?;
        Self::new(&sd.var_builder(DType::F32, device), cfg)
    }

    /// Every tensor the model loads for `cfg`, derived without allocating weights.
    pub fn tensor_specs(cfg: &OobleckConfig) -> Result<Vec<TensorSpec>> {
        record_specs(|vb| Self::new(&vb, cfg))
    }

    /// Builds the model from a `VarBuilder`.
    pub fn new(vb: &VarBuilder, cfg: &OobleckConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            encoder: encoder::Encoder::new(&vb.pp("encoder"), &cfg.encoder)?,
            decoder: decoder::Decoder::new(&vb.pp("decoder"), &cfg.decoder)?,
            cfg: cfg.clone(),
            device: vb.device().clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OobleckConfig {
        &self.cfg
    }

    /// Latent `[B, 64, T]` (or unbatched `[64, T]`) -> waveform `[B, 2, 2048·T]` (`[1, 2, ·]`
    /// for unbatched input, as the reference's broadcast gives). Stops with
    /// [`Error::Cancelled`] within one residual unit of `cancel` being set.
    pub fn decode(&self, latent: &Tensor, cancel: &CancelToken) -> Result<Tensor> {
        let x = batched(latent, self.cfg.latent_dim, "latent")?;
        self.decoder
            .forward(&x.to_dtype(DType::F32)?.to_device(&self.device)?, cancel)
    }

    /// The encoder output before the bottleneck, `[B, 128, floor(N / 2048)]` (mean, then scale).
    pub fn encode_pre_bottleneck(&self, audio: &Tensor, cancel: &CancelToken) -> Result<Tensor> {
        let x = batched(audio, self.cfg.encoder.in_channels, "waveform")?;
        let len = x.dim(2)?;
        if len < self.cfg.downsampling_ratio {
            return Err(Error::InvalidInput(format!(
                "audio of {len} samples is shorter than one latent frame ({} samples)",
                self.cfg.downsampling_ratio
            )));
        }
        self.encoder
            .forward(&x.to_dtype(DType::F32)?.to_device(&self.device)?, cancel)
    }

    /// Waveform `[B, 2, N]` (or `[2, N]`) -> latent `[B, 64, floor(N / 2048)]`, sampled as the
    /// reference does: `noise · (softplus(scale) + 1e-4) + mean`.
    pub fn encode(
        &self,
        audio: &Tensor,
        noise: &mut dyn BottleneckNoise,
        cancel: &CancelToken,
    ) -> Result<Tensor> {
        bottleneck_sample(&self.encode_pre_bottleneck(audio, cancel)?, noise)
    }
}

/// The VAE bottleneck on an encoder output `[B, 2L, T]`: `noise · (softplus(scale) + 1e-4) +
/// mean` with PyTorch's softplus (identity above 20).
pub fn bottleneck_sample(h: &Tensor, noise: &mut dyn BottleneckNoise) -> Result<Tensor> {
    let c = h.dim(1)? / 2;
    let mean = h.narrow(1, 0, c)?;
    let scale = h.narrow(1, c, c)?;
    let softplus = scale
        .gt(20.0)?
        .where_cond(&scale, &(scale.exp()? + 1.0)?.log()?)?;
    let std = (softplus + 1e-4)?;
    let eps = noise.sample(mean.dims(), mean.device())?;
    Ok(((eps * std)? + mean)?)
}

fn batched(x: &Tensor, channels: usize, what: &str) -> Result<Tensor> {
    let x = match x.rank() {
        2 => x.unsqueeze(0)?,
        3 => x.clone(),
        r => {
            return Err(Error::InvalidInput(format!(
                "{what} must be [C, L] or [B, C, L], got rank {r}"
            )))
        }
    };
    if x.dim(1)? != channels {
        return Err(Error::InvalidInput(format!(
            "{what} has {} channels, the model expects {channels}",
            x.dim(1)?
        )));
    }
    Ok(x)
}
