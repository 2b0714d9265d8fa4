//! How latents become tokens: patch size, coordinate style, attention window.

use cadence_core::{Error, Result};
use serde::Deserialize;

/// Which coordinate convention audio and text rows use (video is the same in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum CoordsStyle {
    /// Used by the super-resolution models: audio time spans the video's latent frames, text
    /// sits at `text_offset + k`.
    #[serde(rename = "v1")]
    V1,
    /// Used by the base and distilled models: audio time runs at about a quarter step per frame,
    /// text sits at negative times and is not rotated.
    #[serde(rename = "v2")]
    V2,
}

/// The reference's `DataProxyConfig`, reduced to what inference reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackingConfig {
    /// Spatial patch edge (2): a token covers `patch × patch` latent pixels.
    pub patch_size: usize,
    /// Frames of video attended by a video query on each side in local-attention layers;
    /// `None` means unlimited (the reference's `-1`). Counted in latent frames.
    pub frame_receptive_field: Option<usize>,
    /// Coordinate convention for audio and text.
    pub coords_style: CoordsStyle,
    /// Time offset of text rows under v1 coords.
    pub text_offset: i64,
}

impl PackingConfig {
    /// Base and distilled models: v2 coords, window 11 (only used by local layers).
    pub fn base() -> Self {
        Self {
            patch_size: 2,
            frame_receptive_field: Some(11),
            coords_style: CoordsStyle::V2,
            text_offset: 0,
        }
    }

    /// Super-resolution models: the pipeline forces v1 coords.
    pub fn super_resolution() -> Self {
        Self {
            coords_style: CoordsStyle::V1,
            ..Self::base()
        }
    }

    /// Reads the reference's `data_proxy_config` JSON object. Only `t_patch_size` 1 is
    /// supported (every published model uses it).
    pub fn from_reference_json(value: &serde_json::Value) -> Result<Self> {
        let raw: RawDataProxyConfig = serde_json::from_value(value.clone())
            .map_err(|e| Error::Config(format!("data_proxy_config: {e}")))?;
        if raw.t_patch_size.unwrap_or(1) != 1 {
            return Err(Error::Config(format!(
                "data_proxy_config.t_patch_size {} is not supported (only 1)",
                raw.t_patch_size.unwrap_or(1)
            )));
        }
        let d = Self::base();
        let window = raw.frame_receptive_field.unwrap_or(11);
        let config = Self {
            patch_size: raw.patch_size.unwrap_or(d.patch_size),
            frame_receptive_field: match window {
                -1 => None,
                f if f >= 0 => Some(f as usize),
                f => {
                    return Err(Error::Config(format!(
                        "frame_receptive_field {f} must be -1 or ≥ 0"
                    )))
                }
            },
            coords_style: raw.coords_style.unwrap_or(d.coords_style),
            text_offset: raw.text_offset.unwrap_or(d.text_offset),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values the packer relies on.
    pub fn validate(&self) -> Result<()> {
        if self.patch_size == 0 {
            return Err(Error::Config("patch_size must be at least 1".into()));
        }
        Ok(())
    }
}

/// The reference's `DataProxyConfig` JSON, including fields inference ignores.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataProxyConfig {
    t_patch_size: Option<usize>,
    patch_size: Option<usize>,
    frame_receptive_field: Option<i64>,
    coords_style: Option<CoordsStyle>,
    text_offset: Option<i64>,
    /// Ignored by the reference's data proxy, which always uses "extra" interpolation.
    #[serde(rename = "spatial_rope_interpolation")]
    _spatial_rope_interpolation: Option<serde_json::Value>,
    /// Unused at inference.
    #[serde(rename = "ref_audio_offset")]
    _ref_audio_offset: Option<serde_json::Value>,
}
