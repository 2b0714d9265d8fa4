//! The T5Gemma encoder: embedding, the layer stack and the final RMSNorm.
//!
//! Only the `model.encoder.*` tensors of the encoder-decoder checkpoint are read; the decoder's
//! tensors (more than half of the 40 GB of shards) stay unread in the memory-mapped files.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use cadence_core::{Checkpoint, Error, Result, WeightSource};

use crate::attention::AttentionMode;
use crate::batch::TokenBatch;
use crate::cache::WeightsIdentity;
use crate::config::{TextEncoderConfig, ENCODER_PREFIX};
use crate::layer::EncoderLayer;
use crate::mask::AttentionMasks;
use crate::norm::RmsNorm;
use crate::rope::RotaryTables;
use crate::trace::Trace;

/// The loaded encoder. Drop it to free its weights (about 18.5 GB in bf16, see the crate docs).
#[derive(Debug)]
pub struct TextEncoder {
    cfg: TextEncoderConfig,
    embed_tokens: Tensor,
    /// `sqrt(hidden_size)` rounded to the model dtype, as the reference computes it.
    embed_scale: f64,
    layers: Vec<EncoderLayer>,
    final_norm: RmsNorm,
    dtype: DType,
    device: Device,
    mode: AttentionMode,
    identity: WeightsIdentity,
}

impl TextEncoder {
    /// Loads the encoder of `ckpt` with hyper-parameters `cfg`, computing in `dtype` on
    /// `device` (which may differ from the device of the model that consumes the output).
    ///
    /// The checkpoint's `model.encoder.*` keys must match `cfg` exactly; every missing,
    /// unexpected or mis-shaped key is named in the error. Other keys are ignored.
    pub fn load(
        ckpt: &Checkpoint,
        cfg: &TextEncoderConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::from_source(
            ckpt,
            WeightsIdentity::of_checkpoint(ckpt)?,
            cfg,
            dtype,
            device,
        )
    }

    /// [`TextEncoder::load`] from any weight source (generated weights, for the demo and
    /// benchmarks); `identity` keys the negative-prompt cache.
    pub fn from_source(
        ckpt: &dyn WeightSource,
        identity: WeightsIdentity,
        cfg: &TextEncoderConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16 | DType::F64) {
            return Err(Error::Config(format!(
                "the text encoder computes in a float dtype (bf16 as the reference, or f32), \
                 not {dtype:?}"
            )));
        }
        Self::verify(ckpt, cfg)?;
        let embed_tokens = ckpt.load(
            &format!("{ENCODER_PREFIX}embed_tokens.weight"),
            dtype,
            device,
        )?;
        let layers = (0..cfg.num_layers())
            .map(|i| EncoderLayer::load(ckpt, ENCODER_PREFIX, i, cfg, dtype, device))
            .collect::<Result<Vec<_>>>()?;
        let final_norm = RmsNorm::load(
            ckpt,
            &format!("{ENCODER_PREFIX}norm.weight"),
            cfg.rms_norm_eps,
            device,
        )?;
        Ok(Self {
            embed_scale: round_to(dtype, (cfg.hidden_size as f64).sqrt()),
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            final_norm,
            dtype,
            device: device.clone(),
            mode: AttentionMode::default(),
            identity,
        })
    }

    /// Loads from a checkpoint folder (sharded with `model.safetensors.index.json`, or a single
    /// `model.safetensors`). Hyper-parameters come from its `config.json`; without one, the
    /// real T5Gemma-9B preset is assumed (and the key check catches any other model).
    pub fn open(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let (ckpt, cfg) = Self::open_dir(dir)?;
        Self::load(&ckpt, &cfg, dtype, device)
    }

    /// Every check [`TextEncoder::open`] makes (config, index and shards, headers, keys,
    /// shapes, dtypes) without reading a weight: what `cadence check` runs.
    pub fn check_dir(dir: &Path) -> Result<()> {
        let (ckpt, cfg) = Self::open_dir(dir)?;
        Self::verify(&ckpt, &cfg)
    }

    /// The checkpoint in `dir` and its hyper-parameters (`config.json`, else the T5Gemma-9B
    /// preset).
    fn open_dir(dir: &Path) -> Result<(Checkpoint, TextEncoderConfig)> {
        let config = dir.join("config.json");
        let cfg = if config.is_file() {
            TextEncoderConfig::from_file(&config)?
        } else {
            tracing::info!(
                "{} has no config.json; assuming the t5gemma-9b-9b-ul2 encoder",
                dir.display()
            );
            TextEncoderConfig::t5gemma_9b()
        };
        Ok((Checkpoint::open(dir)?, cfg))
    }

    /// Fails unless `cfg` is valid and the `model.encoder.*` keys of `ckpt` are exactly its
    /// tensors, each in a type the encoder reads.
    pub fn verify(ckpt: &dyn WeightSource, cfg: &TextEncoderConfig) -> Result<()> {
        cfg.validate()?;
        ckpt.verify(ENCODER_PREFIX, &cfg.tensor_specs())
    }

    /// Selects soft-capped ("eager") or official (default, no soft-cap) attention.
    pub fn with_attention_mode(mut self, mode: AttentionMode) -> Self {
        self.mode = mode;
        self
    }

    /// The attention variant in use.
    pub fn attention_mode(&self) -> AttentionMode {
        self.mode
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &TextEncoderConfig {
        &self.cfg
    }

    /// Compute dtype (that of the weights and of the output).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Device the weights live on and the forward pass runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Identity of the weights this encoder was loaded from (keys the negative-prompt cache).
    pub fn identity(&self) -> &WeightsIdentity {
        &self.identity
    }

    /// Encodes `batch`, returning `last_hidden_state` `[B, L, H]` in the model dtype on the
    /// encoder's device. Rows at padded positions are not meaningful.
    pub fn forward(&self, batch: &TokenBatch) -> Result<Tensor> {
        self.run(batch, &mut Trace::disabled())
    }

    /// [`Self::forward`], also returning every intermediate (see [`Trace`]).
    pub fn forward_traced(&self, batch: &TokenBatch) -> Result<(Tensor, Trace)> {
        let mut trace = Trace::enabled();
        let out = self.run(batch, &mut trace)?;
        Ok((out, trace))
    }

    fn run(&self, batch: &TokenBatch, trace: &mut Trace) -> Result<Tensor> {
        batch.validate(self.cfg.vocab_size)?;
        let (b, l) = (batch.batch_size(), batch.len());
        let flat: Vec<u32> = batch.ids.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, b * l, &self.device)?;
        let h = self
            .embed_tokens
            .index_select(&ids, 0)?
            .reshape((b, l, self.cfg.hidden_size))?;
        let mut h = h.affine(self.embed_scale, 0.0)?;
        trace.record(None, "embed_scaled", &h);

        let rope = RotaryTables::new(
            self.cfg.head_dim,
            self.cfg.rope_theta,
            l,
            self.dtype,
            &self.device,
        )?;
        trace.record(None, "rope_cos", &rope.cos);
        trace.record(None, "rope_sin", &rope.sin);
        let masks = AttentionMasks::new(&batch.valid, self.cfg.sliding_window, &self.device)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let mask = masks.for_layer(layer.kind());
            trace.record(Some(i), "attn_mask", mask);
            h = layer.forward(&h, &rope, mask, self.mode, trace, i)?;
        }
        self.final_norm.forward(&h)
    }
}

/// `x` rounded to `dtype`, as `torch.tensor(x, dtype=dtype)` stores it.
fn round_to(dtype: DType, x: f64) -> f64 {
    match dtype {
        DType::BF16 => half::bf16::from_f64(x).to_f64(),
        DType::F16 => half::f16::from_f64(x).to_f64(),
        DType::F32 => x as f32 as f64,
        _ => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_scale_is_rounded_in_the_model_dtype() {
        assert_eq!(round_to(DType::BF16, 3584f64.sqrt()), 59.75);
        assert_eq!(round_to(DType::F32, 3584f64.sqrt()), 59.866_519_927_978_516);
        assert_eq!(round_to(DType::F32, 48f64.sqrt()), 6.928_203_105_926_514);
        assert_eq!(round_to(DType::BF16, 48f64.sqrt()), 6.9375);
    }
}
