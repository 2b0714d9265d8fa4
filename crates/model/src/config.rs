//! The DiT's architecture: one config type, named presets for the published checkpoints, and
//! the reference's JSON field names for reading a config stored beside a checkpoint.

use std::path::Path;

use cadence_core::error::{read_json, Error, Result};
use serde::Deserialize;

/// Number of modality experts in a sandwich layer: video, audio, text (in that order).
pub const NUM_MODALITIES: usize = 3;
/// RMSNorm epsilon of every norm in the model (inside the square root).
pub const NORM_EPS: f64 = 1e-6;

/// Most transformer layers a config may state (the released DiTs have 40): the bound keeps a
/// damaged config from making the loader list millions of tensors.
pub const MAX_LAYERS: usize = 512;

/// Architecture of a daVinci-MagiHuman DiT.
///
/// Field names follow the reference's `ModelConfig`, so a reference JSON reads directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DitConfig {
    /// Transformer layers.
    pub num_layers: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of one attention head (query heads = hidden_size / head_dim).
    pub head_dim: usize,
    /// Key/value heads (grouped-query attention).
    pub num_query_groups: usize,
    /// Features of one packed video token (latent channels × patch area).
    pub video_in_channels: usize,
    /// Features of one audio latent frame.
    pub audio_in_channels: usize,
    /// Features of one text-encoder row.
    pub text_in_channels: usize,
    /// "Sandwich" layers whose every weight exists once per modality.
    pub mm_layers: Vec<usize>,
    /// Layers using the frame-window (local) attention of the 1080p super-resolution model.
    pub local_attn_layers: Vec<usize>,
    /// Whether attention outputs are scaled by a per-head sigmoid gate.
    pub enable_attn_gating: bool,
    /// Layers whose MLP uses gelu7 (4× width) instead of swiglu7.
    pub gelu7_layers: Vec<usize>,
    /// Layers with an extra norm on each branch output (empty in every shipped model).
    pub post_norm_layers: Vec<usize>,
}

/// The MLP activation of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `min(u,7)·sigmoid(1.702·min(u,7))`, intermediate width 4·hidden.
    Gelu7,
    /// Interleaved gated variant with `+1` on the linear half, intermediate width ≈ 8/3·hidden.
    Swiglu7,
}

/// Everything that varies between layers, derived from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    /// 3 for sandwich layers (one expert per modality), else 1.
    pub experts: usize,
    /// MLP activation.
    pub activation: Activation,
    /// MLP intermediate width (the activation's output width).
    pub intermediate: usize,
    /// Whether attention is restricted to frame windows.
    pub local_attn: bool,
    /// Whether each branch output is normalised before its residual add.
    pub post_norm: bool,
}

impl LayerSpec {
    /// Output width of the up-projection per expert (swiglu7 needs gate and linear halves).
    pub fn up_features(&self) -> usize {
        match self.activation {
            Activation::Gelu7 => self.intermediate,
            Activation::Swiglu7 => 2 * self.intermediate,
        }
    }
}

impl DitConfig {
    /// The published base and distilled models (identical architecture, different weights),
    /// and also the 540p super-resolution model.
    pub fn base() -> Self {
        Self {
            num_layers: 40,
            hidden_size: 5120,
            head_dim: 128,
            num_query_groups: 8,
            video_in_channels: 192,
            audio_in_channels: 64,
            text_in_channels: 3584,
            mm_layers: vec![0, 1, 2, 3, 36, 37, 38, 39],
            local_attn_layers: vec![],
            enable_attn_gating: true,
            gelu7_layers: vec![0, 1, 2, 3],
            post_norm_layers: vec![],
        }
    }

    /// The 1080p super-resolution model: the base architecture with frame-window attention in
    /// 32 of the 40 layers (every layer except 3, 7, 11, …, 31).
    pub fn sr_1080p() -> Self {
        let mut local: Vec<usize> = (0..32).filter(|i| i % 4 != 3).collect();
        local.extend(32..40);
        Self {
            local_attn_layers: local,
            ..Self::base()
        }
    }

    /// Query heads: `hidden_size / head_dim`.
    pub fn num_heads_q(&self) -> usize {
        self.hidden_size / self.head_dim
    }

    /// Key/value heads.
    pub fn num_heads_kv(&self) -> usize {
        self.num_query_groups
    }

    /// Width of the packed token rows: the widest modality.
    pub fn packed_width(&self) -> usize {
        self.video_in_channels
            .max(self.audio_in_channels)
            .max(self.text_in_channels)
    }

    /// Output columns of `linear_qkv` per expert: q, k, v and (if gated) one gate per q head.
    pub fn qkv_features(&self) -> usize {
        let gates = if self.enable_attn_gating {
            self.num_heads_q()
        } else {
            0
        };
        (self.num_heads_q() + 2 * self.num_heads_kv()) * self.head_dim + gates
    }

    /// Rope table width: `3/4` of the head (16 bands × 3 axes × sin/cos for head_dim 128).
    pub fn rope_width(&self) -> usize {
        6 * self.rope_bands()
    }

    /// Number of rope frequency bands: `head_dim / 8`.
    pub fn rope_bands(&self) -> usize {
        self.head_dim / 8
    }

    /// Derived facts of layer `i`.
    pub fn layer(&self, i: usize) -> LayerSpec {
        let gelu = self.gelu7_layers.contains(&i);
        LayerSpec {
            experts: if self.mm_layers.contains(&i) {
                NUM_MODALITIES
            } else {
                1
            },
            activation: if gelu {
                Activation::Gelu7
            } else {
                Activation::Swiglu7
            },
            // swiglu7 width: floor(floor(8·hid/3)/4)·4, as the reference rounds it.
            intermediate: if gelu {
                4 * self.hidden_size
            } else {
                self.hidden_size * 8 / 3 / 4 * 4
            },
            local_attn: self.local_attn_layers.contains(&i),
            post_norm: self.post_norm_layers.contains(&i),
        }
    }

    /// Checks internal consistency; every error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        cadence_core::sizes::check_widths(
            "DiT config",
            [
                ("hidden_size", self.hidden_size),
                ("head_dim", self.head_dim),
                ("num_query_groups", self.num_query_groups),
                ("video_in_channels", self.video_in_channels),
                ("audio_in_channels", self.audio_in_channels),
                ("text_in_channels", self.text_in_channels),
            ],
        )?;
        if self.num_layers == 0 || self.num_layers > MAX_LAYERS {
            return bad(format!(
                "num_layers {} is outside 1..={MAX_LAYERS} (the released DiTs have 40); check \
                 config.json",
                self.num_layers
            ));
        }
        if self.head_dim == 0 || !self.hidden_size.is_multiple_of(self.head_dim) {
            return bad(format!(
                "hidden_size {} is not a multiple of head_dim {}",
                self.hidden_size, self.head_dim
            ));
        }
        if !self.head_dim.is_multiple_of(8) {
            return bad(format!(
                "head_dim {} must be a multiple of 8 (rope bands)",
                self.head_dim
            ));
        }
        if self.num_query_groups == 0 || !self.num_heads_q().is_multiple_of(self.num_query_groups) {
            return bad(format!(
                "query heads {} are not a multiple of num_query_groups {}",
                self.num_heads_q(),
                self.num_query_groups
            ));
        }
        for (name, layers) in [
            ("mm_layers", &self.mm_layers),
            ("local_attn_layers", &self.local_attn_layers),
            ("gelu7_layers", &self.gelu7_layers),
            ("post_norm_layers", &self.post_norm_layers),
        ] {
            if let Some(i) = layers.iter().find(|&&i| i >= self.num_layers) {
                return bad(format!(
                    "{name} names layer {i}, but the model has {} layers",
                    self.num_layers
                ));
            }
        }
        Ok(())
    }

    /// Reads a config JSON: either the reference's `ModelConfig` fields at the top level, or a
    /// pipeline config with them under `arch_config`. Missing fields take the base model's
    /// values; unknown fields are an error (a typo must not silently change the model).
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let value: serde_json::Value = read_json(path)?;
        Self::from_reference_json(&value)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// [`DitConfig::from_json_file`] on an already parsed JSON value.
    pub fn from_reference_json(value: &serde_json::Value) -> Result<Self> {
        let arch = value.get("arch_config").unwrap_or(value);
        let raw: RawModelConfig = serde_json::from_value(arch.clone())
            .map_err(|e| Error::Config(format!("model config: {e}")))?;
        raw.into_config()
    }
}

/// The reference's `ModelConfig` as stored in JSON, including fields inference does not use.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModelConfig {
    num_layers: Option<usize>,
    hidden_size: Option<usize>,
    head_dim: Option<usize>,
    num_query_groups: Option<usize>,
    video_in_channels: Option<usize>,
    audio_in_channels: Option<usize>,
    text_in_channels: Option<usize>,
    mm_layers: Option<Vec<usize>>,
    local_attn_layers: Option<Vec<usize>>,
    enable_attn_gating: Option<bool>,
    gelu7_layers: Option<Vec<usize>>,
    post_norm_layers: Option<Vec<usize>>,
    /// Derived by the reference pipeline; checked against our derivation when non-zero.
    num_heads_q: Option<usize>,
    num_heads_kv: Option<usize>,
    // Training-only or informational fields, accepted and ignored.
    #[serde(rename = "checkpoint_qk_layernorm_rope")]
    _checkpoint_qk_layernorm_rope: Option<serde_json::Value>,
    #[serde(rename = "params_dtype")]
    _params_dtype: Option<serde_json::Value>,
    #[serde(rename = "tread_config")]
    _tread_config: Option<serde_json::Value>,
    #[serde(rename = "activation_type")]
    _activation_type: Option<serde_json::Value>,
}

impl RawModelConfig {
    fn into_config(self) -> Result<DitConfig> {
        let d = DitConfig::base();
        let config = DitConfig {
            num_layers: self.num_layers.unwrap_or(d.num_layers),
            hidden_size: self.hidden_size.unwrap_or(d.hidden_size),
            head_dim: self.head_dim.unwrap_or(d.head_dim),
            num_query_groups: self.num_query_groups.unwrap_or(d.num_query_groups),
            video_in_channels: self.video_in_channels.unwrap_or(d.video_in_channels),
            audio_in_channels: self.audio_in_channels.unwrap_or(d.audio_in_channels),
            text_in_channels: self.text_in_channels.unwrap_or(d.text_in_channels),
            mm_layers: self.mm_layers.unwrap_or(d.mm_layers),
            local_attn_layers: self.local_attn_layers.unwrap_or(d.local_attn_layers),
            enable_attn_gating: self.enable_attn_gating.unwrap_or(d.enable_attn_gating),
            gelu7_layers: self.gelu7_layers.unwrap_or(d.gelu7_layers),
            post_norm_layers: self.post_norm_layers.unwrap_or(d.post_norm_layers),
        };
        // Before the derived head counts: they divide by head_dim.
        config.validate()?;
        for (name, stated, derived) in [
            ("num_heads_q", self.num_heads_q, config.num_heads_q()),
            ("num_heads_kv", self.num_heads_kv, config.num_heads_kv()),
        ] {
            if let Some(n) = stated.filter(|&n| n != 0 && n != derived) {
                return Err(Error::Config(format!(
                    "{name} is {n}, but hidden_size/head_dim/num_query_groups give {derived}"
                )));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_sizes() {
        let c = DitConfig::base();
        assert_eq!((c.num_heads_q(), c.num_heads_kv()), (40, 8));
        assert_eq!(c.qkv_features(), 7208);
        assert_eq!(c.layer(4).intermediate, 13652);
        assert_eq!(c.layer(0).intermediate, 20480);
        assert_eq!(c.packed_width(), 3584);
        assert_eq!(c.rope_width(), 96);
    }

    #[test]
    fn sr_1080p_local_layers_are_the_reference_list() {
        let want = [
            0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18, 20, 21, 22, 24, 25, 26, 28, 29, 30,
            32, 33, 34, 35, 36, 37, 38, 39,
        ];
        assert_eq!(DitConfig::sr_1080p().local_attn_layers, want);
    }
}
