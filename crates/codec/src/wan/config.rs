//! Wan2.2 VAE configuration (`WanVAE_` constructor arguments).

use cadence_core::{Error, Result};
use serde::Deserialize;

/// The `WanVAE_` arguments. Deserialises from the reference's keyword names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WanConfig {
    /// Encoder base width (160 real).
    pub dim: usize,
    /// Decoder base width (256 real).
    pub dec_dim: usize,
    /// Latent channels (48).
    pub z_dim: usize,
    /// Width multipliers per stage (`[1, 2, 4, 4]`).
    pub dim_mult: Vec<usize>,
    /// Residual blocks per encoder stage (decoder stages have one more).
    pub num_res_blocks: usize,
    /// Which encoder stages also halve time (`[false, true, true]`); the decoder reverses it.
    #[serde(rename = "temperal_downsample")]
    pub temporal_downsample: Vec<bool>,
    /// Stages with attention; must be empty (Wan2.2 has none outside the middle block).
    #[serde(default)]
    pub attn_scales: Vec<f64>,
}

/// Most residual blocks a stage may have (Wan2.2 has 2): the bound keeps a damaged config
/// from making the loader list millions of tensors.
pub const MAX_RES_BLOCKS: usize = 64;

/// Most stages a config may list (Wan2.2 has 4).
pub const MAX_STAGES: usize = 16;

impl WanConfig {
    /// Wan2.2-TI2V-5B's `Wan2.2_VAE.pth`.
    pub fn wan22_ti2v_5b() -> Self {
        Self {
            dim: 160,
            dec_dim: 256,
            z_dim: 48,
            dim_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            temporal_downsample: vec![false, true, true],
            attn_scales: Vec::new(),
        }
    }

    /// Checks the invariants the model relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("Wan VAE: {m}")));
        if self.dim_mult.is_empty() || self.num_res_blocks == 0 {
            return bad("dim_mult and num_res_blocks must be non-empty".into());
        }
        if self.dim_mult.len() > MAX_STAGES {
            return bad(format!(
                "dim_mult has {} stages, more than {MAX_STAGES} (Wan2.2 has 4)",
                self.dim_mult.len()
            ));
        }
        // The widths multiply (dim * dim_mult * kernel volume) when the loader lists tensors.
        cadence_core::sizes::check_widths(
            "Wan VAE config",
            [
                ("dim", self.dim),
                ("dec_dim", self.dec_dim),
                ("z_dim", self.z_dim),
            ]
            .into_iter()
            .chain(self.dim_mult.iter().map(|&m| ("dim_mult", m))),
        )?;
        if self.num_res_blocks > MAX_RES_BLOCKS {
            return bad(format!(
                "num_res_blocks {} is more than {MAX_RES_BLOCKS} (Wan2.2 has 2)",
                self.num_res_blocks
            ));
        }
        if self.temporal_downsample.len() + 1 != self.dim_mult.len() {
            return bad(format!(
                "temperal_downsample has {} entries, dim_mult {} (expected one fewer)",
                self.temporal_downsample.len(),
                self.dim_mult.len()
            ));
        }
        if !self.attn_scales.is_empty() {
            return bad("attn_scales must be empty (Wan2.2 has no stage attention)".into());
        }
        if self.z_dim != crate::video::latent_norm::LATENT_CHANNELS {
            return bad(format!("z_dim {} is not 48", self.z_dim));
        }
        Ok(())
    }
}
