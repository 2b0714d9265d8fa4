//! Turbo-VAED configuration: the JSON handed to `TurboVAED.from_config`
//! (`TurboV3-Wan22-TinyShallow_7_7.json`). Keys the decoder does not use
//! (`aligned_feature_projection_*`, `aligned_blks_indices`, encoder-side keys) are ignored.

use std::path::Path;

use cadence_core::{Error, Result};
use serde::Deserialize;

/// The decoder-relevant part of the Turbo-VAED config. Per-block lists are given encoder-side
/// (shallow to deep) and are reversed by the decoder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TurboConfig {
    /// Latent channels (48).
    pub latent_channels: usize,
    /// Output colour channels (3).
    pub out_channels: usize,
    /// Widths per block, encoder order (`[64, 128, 256, 512]` real).
    pub decoder_block_out_channels: Vec<usize>,
    /// Resnets per block, encoder order; the last entry is the mid block (`[2, 2, 2, 3, 3]`).
    pub decoder_layers_per_block: Vec<usize>,
    /// Whether each block (encoder order) has an upsampler in the decoder.
    pub decoder_spatio_temporal_scaling: Vec<bool>,
    /// Whether that upsampler is spatial only.
    pub decoder_spatio_only: Vec<bool>,
    /// Depthwise-separable convs per block; must all be false (the released model has none).
    #[serde(default)]
    pub decoder_is_dw_conv: Vec<bool>,
    /// Causal time padding; must be false (the released model pads by replication).
    #[serde(default)]
    pub decoder_causal: bool,
    /// Spatial patch size (2).
    pub patch_size: usize,
    /// Temporal patch size (1).
    #[serde(default = "one")]
    pub patch_size_t: usize,
    /// Epsilon of the shortcut RMSNorm (1e-6).
    pub resnet_norm_eps: f64,
    /// Latent frames in the first window (7).
    pub first_chunk_size: usize,
    /// Latent frames per later window (7).
    pub step_size: usize,
    /// Video frames per latent frame (4).
    pub temporal_compression_ratio: usize,
    /// Unpatchify after `conv_out`; must be true.
    #[serde(default = "yes")]
    pub use_unpatchify: bool,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

/// Most resnet layers a decoder block may have (the released decoder has at most 3): the
/// bound keeps a damaged config from making the loader list millions of tensors.
pub const MAX_LAYERS_PER_BLOCK: usize = 64;

/// Most decoder blocks a config may list (the released decoder has 4).
pub const MAX_BLOCKS: usize = 16;

impl TurboConfig {
    /// Reads the JSON config file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let cfg: Self = cadence_core::error::read_json(path.as_ref())?;
        cfg.validate()
            .map_err(|e| Error::Config(format!("{}: {e}", path.as_ref().display())))?;
        Ok(cfg)
    }

    /// The released `TurboV3-Wan22-TinyShallow_7_7` decoder.
    pub fn turbo_v3_wan22() -> Self {
        Self {
            latent_channels: 48,
            out_channels: 3,
            decoder_block_out_channels: vec![64, 128, 256, 512],
            decoder_layers_per_block: vec![2, 2, 2, 3, 3],
            decoder_spatio_temporal_scaling: vec![false, true, true, true],
            decoder_spatio_only: vec![false, true, false, false],
            decoder_is_dw_conv: vec![false; 5],
            decoder_causal: false,
            patch_size: 2,
            patch_size_t: 1,
            resnet_norm_eps: 1e-6,
            first_chunk_size: 7,
            step_size: 7,
            temporal_compression_ratio: 4,
            use_unpatchify: true,
        }
    }

    /// Checks that the config describes a decoder this port implements.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("Turbo-VAED: {m}")));
        let n = self.decoder_block_out_channels.len();
        if n == 0
            || self.decoder_layers_per_block.len() != n + 1
            || self.decoder_spatio_temporal_scaling.len() != n
            || self.decoder_spatio_only.len() != n
        {
            return bad(
                "decoder_* lists must have one entry per block (layers_per_block one more)",
            );
        }
        if n > MAX_BLOCKS {
            return Err(Error::Config(format!(
                "Turbo-VAED: {n} decoder blocks is more than {MAX_BLOCKS} (the released decoder \
                 has 4)"
            )));
        }
        cadence_core::sizes::check_widths(
            "Turbo-VAED config",
            [
                ("out_channels", self.out_channels),
                ("first_chunk_size", self.first_chunk_size),
                ("step_size", self.step_size),
            ]
            .into_iter()
            .chain(
                self.decoder_block_out_channels
                    .iter()
                    .map(|&c| ("decoder_block_out_channels", c)),
            ),
        )?;
        if self
            .decoder_layers_per_block
            .iter()
            .any(|&l| l > MAX_LAYERS_PER_BLOCK)
        {
            return Err(Error::Config(format!(
                "Turbo-VAED: decoder_layers_per_block {:?} has a block of more than \
                 {MAX_LAYERS_PER_BLOCK} layers (the released decoder has at most 3)",
                self.decoder_layers_per_block
            )));
        }
        if self.decoder_is_dw_conv.iter().any(|&d| d) {
            return bad("depthwise-separable convs (decoder_is_dw_conv) are not supported");
        }
        if self.decoder_causal {
            return bad("decoder_causal = true is not supported");
        }
        if self.patch_size != 2 || self.patch_size_t != 1 || !self.use_unpatchify {
            return bad("only patch_size 2, patch_size_t 1 with use_unpatchify is supported");
        }
        if self.latent_channels != crate::video::latent_norm::LATENT_CHANNELS {
            return bad("latent_channels must be 48 (the Wan2.2 latent)");
        }
        let temporal_ups = self
            .decoder_spatio_temporal_scaling
            .iter()
            .zip(&self.decoder_spatio_only)
            .filter(|(up, spatial)| **up && !**spatial)
            .count();
        if 1usize.checked_shl(temporal_ups as u32) != Some(self.temporal_compression_ratio) {
            return bad("temporal_compression_ratio must be 2^(number of temporal upsamplers)");
        }
        if self.first_chunk_size == 0 || self.step_size == 0 || self.temporal_compression_ratio == 0
        {
            return bad("window sizes and temporal_compression_ratio must be positive");
        }
        Ok(())
    }
}
