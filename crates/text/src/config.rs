//! Hyper-parameters of the T5Gemma encoder, and the checkpoint tensors they imply.
//!
//! The real model is the encoder half of `google/t5gemma-9b-9b-ul2` ([`TextEncoderConfig::t5gemma_9b`]).
//! A Hugging Face `config.json` is accepted in both of its shapes: the encoder-decoder file, whose
//! encoder settings sit under `"encoder"`, or a flat module config (what the fixtures carry).

use std::path::Path;

use candle_core::DType;

use cadence_core::var_builder::record_specs;
use cadence_core::{Error, Result, TensorSpec};
use serde::Deserialize;
use serde_json::Value;

/// Key prefix of the encoder's tensors inside the encoder-decoder checkpoint. Every other key
/// (`model.decoder.*`) belongs to the decoder, which the pipeline never uses.
pub const ENCODER_PREFIX: &str = "model.encoder.";

/// Which keys a layer may attend to (besides never attending to padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// Only keys within `sliding_window - 1` positions on either side (`|p - q| < window`).
    Sliding,
    /// Every key.
    Full,
}

/// Everything the encoder's forward pass depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct TextEncoderConfig {
    /// Rows of the embedding table.
    pub vocab_size: usize,
    /// Width `H` of the residual stream (and of the output rows).
    pub hidden_size: usize,
    /// Width of the gated MLP.
    pub intermediate_size: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads; consecutive groups of `num_heads / num_kv_heads` query heads share one.
    pub num_kv_heads: usize,
    /// Width of one head (`num_heads * head_dim` need not equal `hidden_size`).
    pub head_dim: usize,
    /// Attention scores are scaled by `query_pre_attn_scalar^-0.5`, not by `head_dim^-0.5`.
    pub query_pre_attn_scalar: f64,
    /// Half-width (exclusive) of the sliding-window layers.
    pub sliding_window: usize,
    /// The config's attention-logit soft-cap. The official pipeline does NOT apply it (its
    /// attention backend drops it); it is used only by [`crate::AttentionMode::EagerSoftcap`].
    pub attn_logit_softcapping: Option<f64>,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// The kind of every layer, in order (its length is the layer count).
    pub layer_kinds: Vec<LayerKind>,
}

impl TextEncoderConfig {
    /// The encoder of `google/t5gemma-9b-9b-ul2`, as its `config.json` states it.
    pub fn t5gemma_9b() -> Self {
        Self {
            vocab_size: 256_000,
            hidden_size: 3584,
            intermediate_size: 14_336,
            num_heads: 16,
            num_kv_heads: 8,
            head_dim: 256,
            query_pre_attn_scalar: 256.0,
            sliding_window: 4096,
            attn_logit_softcapping: Some(50.0),
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            layer_kinds: alternating_layers(42),
        }
    }

    /// Reads a Hugging Face `config.json` (encoder-decoder or flat module config).
    pub fn from_file(path: &Path) -> Result<Self> {
        let value: Value = cadence_core::error::read_json(path)?;
        Self::from_hf_json(&value).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Parses the encoder settings from a `config.json` value: the `"encoder"` object when
    /// present, else the value itself.
    pub fn from_hf_json(value: &Value) -> Result<Self> {
        let module = value.get("encoder").unwrap_or(value);
        let hf: HfModuleConfig = serde_json::from_value(module.clone())
            .map_err(|e| Error::Config(format!("T5Gemma encoder config: {e}")))?;
        hf.into_config()
    }

    /// Layers, one per entry of `layer_types`.
    pub fn num_layers(&self) -> usize {
        self.layer_kinds.len()
    }

    /// Output width of `q_proj` (`num_heads * head_dim`).
    pub fn q_width(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Output width of `k_proj` / `v_proj` (`num_kv_heads * head_dim`).
    pub fn kv_width(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// The factor applied to `q . k`.
    pub fn attn_scale(&self) -> f64 {
        self.query_pre_attn_scalar.powf(-0.5)
    }

    /// Every tensor the encoder reads, relative to [`ENCODER_PREFIX`], with its shape, recorded
    /// from the encoder's own constructor (which states each key and shape once) without
    /// allocating any weight.
    pub fn tensor_specs(&self) -> Vec<TensorSpec> {
        // The recorder serves every request, so recording a validated config cannot fail; a
        // failure would be a bug in the constructor, not bad input.
        record_specs(|vb| crate::encoder::Weights::load_each(&vb, self, drop).map(drop))
            .expect("recording the encoder's tensors cannot fail")
    }

    /// Number of encoder parameters (sum over [`Self::tensor_specs`]).
    pub fn num_params(&self) -> usize {
        self.tensor_specs()
            .iter()
            .map(|s| s.shape.iter().product::<usize>())
            .sum()
    }

    /// Bytes the loaded encoder holds computing in `dtype`: matrices in `dtype`, norm scales in
    /// f32 (as [`crate::TextEncoder`] keeps them), split for the memory plan.
    pub fn held_bytes(&self, dtype: DType) -> TextEncoderBytes {
        let bytes = |spec: &TensorSpec| {
            let elements = spec.shape.iter().product::<usize>() as u64;
            let per = if spec.shape.len() == 1 {
                4
            } else {
                dtype.size_in_bytes() as u64
            };
            elements * per
        };
        let specs = self.tensor_specs();
        let of = |prefix: &str| -> u64 {
            specs
                .iter()
                .filter(|s| s.name.starts_with(prefix))
                .map(bytes)
                .sum()
        };
        let layers: Vec<u64> = (0..self.num_layers())
            .map(|i| of(&format!("layers.{i}.")))
            .collect();
        TextEncoderBytes {
            embedding: of("embed_tokens."),
            final_norm: of("norm."),
            layers: layers.iter().sum(),
            largest_layer: layers.iter().copied().max().unwrap_or(0),
        }
    }

    /// Checks the relations the forward pass relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("T5Gemma encoder config: {m}")));
        if self.num_layers() == 0 || self.hidden_size == 0 || self.vocab_size == 0 {
            return bad("layers, hidden_size and vocab_size must be positive".into());
        }
        if self.num_layers() > MAX_LAYERS {
            return bad(format!(
                "{} layers is more than the {MAX_LAYERS} this loader accepts",
                self.num_layers()
            ));
        }
        if self.vocab_size > MAX_VOCAB {
            return bad(format!(
                "vocab_size {} is more than the {MAX_VOCAB} this loader accepts (T5Gemma has \
                 256000)",
                self.vocab_size
            ));
        }
        cadence_core::sizes::check_widths(
            "T5Gemma encoder config",
            [
                ("hidden_size", self.hidden_size),
                ("intermediate_size", self.intermediate_size),
                ("num_attention_heads", self.num_heads),
                ("num_key_value_heads", self.num_kv_heads),
                ("head_dim", self.head_dim),
                ("sliding_window", self.sliding_window),
            ],
        )?;
        if self.num_kv_heads == 0 || !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head_dim ({}) must be even for rotary embeddings",
                self.head_dim
            ));
        }
        if self.query_pre_attn_scalar <= 0.0 || self.sliding_window == 0 {
            return bad("query_pre_attn_scalar and sliding_window must be positive".into());
        }
        Ok(())
    }
}

/// Most encoder layers a config may state (T5Gemma-9B has 42): the bound keeps a damaged
/// config from making the loader list billions of tensors.
pub const MAX_LAYERS: usize = 512;

/// Largest vocabulary a config may state (T5Gemma's is 256000).
pub const MAX_VOCAB: usize = 1 << 20;

/// Gemma-2's layer pattern: sliding first, then alternating.
fn alternating_layers(n: usize) -> Vec<LayerKind> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                LayerKind::Sliding
            } else {
                LayerKind::Full
            }
        })
        .collect()
}

/// The fields of transformers' `T5GemmaModuleConfig` that matter to the encoder. Optional ones
/// take that class's defaults.
#[derive(Deserialize)]
struct HfModuleConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    #[serde(default = "default_head_dim")]
    head_dim: usize,
    #[serde(default = "default_activation")]
    hidden_activation: String,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    #[serde(default)]
    rope_scaling: Option<Value>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default = "default_scalar")]
    query_pre_attn_scalar: f64,
    #[serde(default = "default_window")]
    sliding_window: usize,
    #[serde(default)]
    attn_logit_softcapping: Option<f64>,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
}

fn default_head_dim() -> usize {
    256
}
fn default_activation() -> String {
    "gelu_pytorch_tanh".into()
}
fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_scalar() -> f64 {
    256.0
}
fn default_window() -> usize {
    4096
}

impl HfModuleConfig {
    fn into_config(self) -> Result<TextEncoderConfig> {
        let bad = |m: String| Err(Error::Config(format!("T5Gemma encoder config: {m}")));
        if !matches!(
            self.hidden_activation.as_str(),
            "gelu_pytorch_tanh" | "gelu_tanh"
        ) {
            return bad(format!(
                "hidden_activation {:?} is not supported (only gelu_pytorch_tanh)",
                self.hidden_activation
            ));
        }
        if self.attention_bias {
            return bad("attention_bias = true is not supported (T5Gemma has no biases)".into());
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return bad("rope_scaling is not supported (T5Gemma uses default RoPE)".into());
        }
        // Before the per-layer list is built: a config may state any number.
        if self.num_hidden_layers > MAX_LAYERS {
            return bad(format!(
                "num_hidden_layers {} is more than the {MAX_LAYERS} this loader accepts (T5Gemma-9B \
                 has 42); check config.json",
                self.num_hidden_layers
            ));
        }
        let layer_kinds = match self.layer_types {
            None => alternating_layers(self.num_hidden_layers),
            Some(types) => {
                if types.len() != self.num_hidden_layers {
                    return bad(format!(
                        "layer_types has {} entries for {} layers",
                        types.len(),
                        self.num_hidden_layers
                    ));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        "sliding_attention" => Ok(LayerKind::Sliding),
                        "full_attention" => Ok(LayerKind::Full),
                        other => Err(Error::Config(format!(
                            "T5Gemma encoder config: unknown layer type {other:?}"
                        ))),
                    })
                    .collect::<Result<_>>()?
            }
        };
        let cfg = TextEncoderConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_heads: self.num_attention_heads,
            num_kv_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            query_pre_attn_scalar: self.query_pre_attn_scalar,
            sliding_window: self.sliding_window,
            attn_logit_softcapping: self.attn_logit_softcapping,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            layer_kinds,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The encoder's weight bytes by part ([`TextEncoderConfig::held_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextEncoderBytes {
    /// The token embedding table.
    pub embedding: u64,
    /// The final norm's weight.
    pub final_norm: u64,
    /// All layers.
    pub layers: u64,
    /// The largest layer (what a streamed encoder holds per layer in flight).
    pub largest_layer: u64,
}

impl TextEncoderBytes {
    /// Everything.
    pub fn total(&self) -> u64 {
        self.embedding + self.final_norm + self.layers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_has_the_documented_parameter_count() {
        let cfg = TextEncoderConfig::t5gemma_9b();
        assert_eq!(cfg.num_params(), 9_241_705_984);
        assert_eq!(cfg.tensor_specs().len(), 2 + 42 * 11);
        assert_eq!(cfg.attn_scale(), 1.0 / 16.0);
    }

    #[test]
    fn encoder_decoder_config_reads_the_encoder_half() {
        let json = serde_json::json!({
            "model_type": "t5gemma",
            "encoder": {
                "vocab_size": 256000, "hidden_size": 3584, "intermediate_size": 14336,
                "num_hidden_layers": 42, "num_attention_heads": 16, "num_key_value_heads": 8,
                "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 4096,
                "attn_logit_softcapping": 50.0, "rms_norm_eps": 1e-6, "rope_theta": 10000.0
            },
            "decoder": { "hidden_size": 1 }
        });
        let cfg = TextEncoderConfig::from_hf_json(&json).unwrap();
        assert_eq!(cfg, TextEncoderConfig::t5gemma_9b());
    }

    #[test]
    fn unsupported_settings_are_named() {
        let json = serde_json::json!({
            "vocab_size": 8, "hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 3, "num_key_value_heads": 2, "head_dim": 2
        });
        let err = TextEncoderConfig::from_hf_json(&json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_key_value_heads"), "{err}");
        let json = serde_json::json!({
            "vocab_size": 8, "hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 2,
            "hidden_activation": "relu"
        });
        let err = TextEncoderConfig::from_hf_json(&json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("relu"), "{err}");
    }
}
