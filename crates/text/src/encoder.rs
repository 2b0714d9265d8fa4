//! The T5Gemma encoder: embedding, the layer stack and the final RMSNorm.
//!
//! Only the `model.encoder.*` tensors of the encoder-decoder checkpoint are read; the decoder's
//! tensors (more than half of the 40 GB of shards) stay unread in the memory-mapped files.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use candle_nn::VarBuilder;

use cadence_core::var_builder::var_builder;
use cadence_core::{trace, Checkpoint, Error, Result, TensorTree, WeightSource};
use cadence_kernels::transfer::LayerStack;

use crate::attention::AttentionMode;
use crate::batch::TokenBatch;
use crate::cache::WeightsIdentity;
use crate::config::{TextEncoderConfig, ENCODER_PREFIX};
use crate::layer::EncoderLayer;
use crate::mask::AttentionMasks;
use crate::norm::GemmaRmsNorm;
use crate::rope::RotaryTables;

/// The loaded encoder. Drop it to free its weights (about 18.5 GB in bf16, see the crate docs).
#[derive(Debug)]
pub struct TextEncoder {
    cfg: TextEncoderConfig,
    /// The embedding table (1.8 GB at the real size): on `device`, or in host memory when the
    /// layers are streamed (only the prompt's rows then travel to the device).
    embed_tokens: Tensor,
    /// `sqrt(hidden_size)` rounded to the model dtype, as the reference computes it.
    embed_scale: f64,
    /// Resident on `device`, or parked in host memory and streamed to it.
    layers: LayerStack<EncoderLayer>,
    final_norm: GemmaRmsNorm,
    dtype: DType,
    device: Device,
    mode: AttentionMode,
    identity: WeightsIdentity,
}

/// The encoder's tensors, as [`TextEncoder`] holds them. Loading states every key and shape
/// once: [`TextEncoderConfig::tensor_specs`] records this same constructor.
pub(crate) struct Weights {
    embed_tokens: Tensor,
    layers: Vec<EncoderLayer>,
    final_norm: GemmaRmsNorm,
}

impl Weights {
    /// Loads `embed_tokens.weight`, `layers.{i}.*` and `norm.weight` under `vb`.
    pub(crate) fn load(vb: &VarBuilder, cfg: &TextEncoderConfig) -> Result<Self> {
        let mut layers = Vec::with_capacity(cfg.num_layers());
        let (embed_tokens, final_norm) = Self::load_each(vb, cfg, |layer| layers.push(layer))?;
        Ok(Self {
            embed_tokens,
            layers,
            final_norm,
        })
    }

    /// [`Self::load`], handing each layer to `each` as it is built (the key recorder drops them
    /// one by one, so it never holds more than one layer's norm scales).
    pub(crate) fn load_each(
        vb: &VarBuilder,
        cfg: &TextEncoderConfig,
        mut each: impl FnMut(EncoderLayer),
    ) -> Result<(Tensor, GemmaRmsNorm)> {
        let embed_tokens = vb.get((cfg.vocab_size, cfg.hidden_size), "embed_tokens.weight")?;
        for i in 0..cfg.num_layers() {
            each(EncoderLayer::load(&vb.pp(format!("layers.{i}")), i, cfg)?);
        }
        let final_norm = GemmaRmsNorm::load(&vb.pp("norm"), cfg.hidden_size, cfg.rms_norm_eps)?;
        Ok((embed_tokens, final_norm))
    }
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
        let vb = var_builder(ckpt, dtype, device);
        let Weights {
            embed_tokens,
            layers,
            final_norm,
        } = Weights::load(&vb.pp(ENCODER_PREFIX.trim_end_matches('.')), cfg)?;
        Ok(Self {
            embed_scale: round_to(dtype, (cfg.hidden_size as f64).sqrt()),
            cfg: cfg.clone(),
            embed_tokens,
            layers: LayerStack::resident(layers),
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

    /// The same encoder with every weight on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        self.rebuilt(
            device,
            self.embed_tokens.to_device(device)?,
            self.layers.to_device(device)?,
        )
    }

    /// The same encoder computing on `device` with its layers and its embedding table in host
    /// memory; the layers are streamed to `device` a few ahead of use.
    pub fn into_streamed(self, device: &Device) -> Result<Self> {
        let mut encoder = self.rebuilt(
            device,
            self.embed_tokens.to_device(&Device::Cpu)?,
            LayerStack::resident(Vec::new()),
        )?;
        encoder.layers = self.layers.into_streamed(device)?;
        Ok(encoder)
    }

    fn rebuilt(
        &self,
        device: &Device,
        embed_tokens: Tensor,
        layers: LayerStack<EncoderLayer>,
    ) -> Result<Self> {
        Ok(Self {
            cfg: self.cfg.clone(),
            embed_tokens,
            embed_scale: self.embed_scale,
            layers,
            final_norm: self.final_norm.to_device(device)?,
            dtype: self.dtype,
            device: device.clone(),
            mode: self.mode,
            identity: self.identity.clone(),
        })
    }

    /// The most bytes of streamed layers on the device at once since the last call (0 when the
    /// layers are resident).
    pub fn take_streamed_peak(&self) -> u64 {
        self.layers.take_peak_streamed()
    }

    /// Bytes of weights held on the encoder's device while idle (with streamed layers: the
    /// final norm only; [`Self::take_streamed_peak`] measures the layers in flight).
    pub fn device_bytes(&self) -> u64 {
        let (embedding_here, _) = self.embedding_bytes();
        embedding_here + self.final_norm.tensor_bytes() + self.layers.resident_bytes()
    }

    /// Bytes of weights parked in host memory (the streamed layers and the embedding table).
    pub fn host_bytes(&self) -> u64 {
        let (_, embedding_parked) = self.embedding_bytes();
        embedding_parked + self.layers.host_bytes()
    }

    /// The embedding table's bytes as `(on the device, parked in host memory)`.
    fn embedding_bytes(&self) -> (u64, u64) {
        let bytes = self.embed_tokens.tensor_bytes();
        if self.embed_tokens.device().same_device(&self.device) && !self.layers.is_streamed() {
            (bytes, 0)
        } else {
            (0, bytes)
        }
    }

    /// Identity of the weights this encoder was loaded from (keys the negative-prompt cache).
    pub fn identity(&self) -> &WeightsIdentity {
        &self.identity
    }

    /// Encodes `batch`, returning `last_hidden_state` `[B, L, H]` in the model dtype on the
    /// encoder's device. Rows at padded positions are not meaningful.
    ///
    /// Inside a [`cadence_core::trace`] capture it records `embed_scaled`, `rope_cos`,
    /// `rope_sin` and, for each layer `i`, `layer{i}.attn_mask`, `layer{i}.attn_norm`,
    /// `layer{i}.q_proj`, `layer{i}.k_proj`, `layer{i}.v_proj`, `layer{i}.attn_context`,
    /// `layer{i}.attn_out`, `layer{i}.attn_post_norm`, `layer{i}.ffn_norm`, `layer{i}.mlp_out`,
    /// `layer{i}.ffn_post_norm` and `layer{i}.out`.
    pub fn forward(&self, batch: &TokenBatch) -> Result<Tensor> {
        batch.validate(self.cfg.vocab_size)?;
        let (b, l) = (batch.batch_size(), batch.len());
        let flat: Vec<u32> = batch.ids.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, b * l, self.embed_tokens.device())?;
        let h = self
            .embed_tokens
            .index_select(&ids, 0)?
            .to_device(&self.device)?
            .reshape((b, l, self.cfg.hidden_size))?;
        let h = h.affine(self.embed_scale, 0.0)?;
        trace::record(|| "embed_scaled".into(), &h);

        let rope = RotaryTables::new(
            self.cfg.head_dim,
            self.cfg.rope_theta,
            l,
            self.dtype,
            &self.device,
        )?;
        trace::record(|| "rope_cos".into(), &rope.cos);
        trace::record(|| "rope_sin".into(), &rope.sin);
        let masks = AttentionMasks::new(&batch.valid, self.cfg.sliding_window)?;
        let h = self.layers.run(h, |h, i, layer| {
            if trace::active() {
                let dense = masks.dense(layer.kind(), &self.device)?;
                trace::record(|| format!("layer{i}.attn_mask"), &dense);
            }
            layer.forward(&h, &rope, masks.for_layer(layer.kind()), self.mode)
        })?;
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

    #[test]
    fn a_streamed_encoder_computes_what_a_resident_one_does() {
        use crate::config::LayerKind;
        let cfg = TextEncoderConfig {
            vocab_size: 40,
            hidden_size: 32,
            intermediate_size: 64,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 16,
            query_pre_attn_scalar: 16.0,
            sliding_window: 4,
            attn_logit_softcapping: None,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            layer_kinds: vec![LayerKind::Sliding, LayerKind::Full, LayerKind::Sliding],
        };
        let weights = cadence_core::RandomWeights::seeded(&cfg.tensor_specs(), ENCODER_PREFIX, 3);
        let encoder = TextEncoder::from_source(
            &weights,
            WeightsIdentity::named("test"),
            &cfg,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let batch = TokenBatch::single(vec![5, 9, 11, 2, 30, 7, 1]);
        let out = |e: &TextEncoder| -> Vec<f32> {
            e.forward(&batch)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let total = encoder.device_bytes();
        let predicted = cfg.held_bytes(DType::F32);
        assert_eq!(total, predicted.total());
        let streamed = TextEncoder::from_source(
            &weights,
            WeightsIdentity::named("test"),
            &cfg,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
        .into_streamed(&Device::Cpu)
        .unwrap();
        assert_eq!(out(&streamed), out(&encoder));
        assert_eq!(streamed.device_bytes() + streamed.host_bytes(), total);
        assert_eq!(streamed.device_bytes(), predicted.final_norm);
        let back = streamed.to_device(&Device::Cpu).unwrap();
        assert_eq!(out(&back), out(&encoder));
        assert_eq!((back.device_bytes(), back.host_bytes()), (total, 0));
    }
}
