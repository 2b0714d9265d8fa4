//! The published DiT checkpoints as named presets.

use std::fmt;
use std::str::FromStr;

use cadence_core::Error;

use crate::config::DitConfig;
use crate::packing::PackingConfig;

/// One of the four published DiTs. All share the architecture except the local-attention
/// layers of the 1080p super-resolution model; they differ in weights and coordinate style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DitVariant {
    /// The base model: 32 steps with classifier-free guidance.
    Base,
    /// The distilled model: 8 steps, no guidance.
    Distilled,
    /// The super-resolution model for 540p (global attention, v1 coords).
    Sr540p,
    /// The super-resolution model for 1080p (frame-window attention in 32 layers, v1 coords).
    Sr1080p,
}

impl DitVariant {
    /// Every variant; names parse against this list.
    pub const ALL: [DitVariant; 4] = [Self::Base, Self::Distilled, Self::Sr540p, Self::Sr1080p];

    /// The architecture.
    pub fn config(self) -> DitConfig {
        match self {
            Self::Sr1080p => DitConfig::sr_1080p(),
            _ => DitConfig::base(),
        }
    }

    /// How the pipeline packs tokens for this model.
    pub fn packing(self) -> PackingConfig {
        match self {
            Self::Base | Self::Distilled => PackingConfig::base(),
            Self::Sr540p | Self::Sr1080p => PackingConfig::super_resolution(),
        }
    }

    /// The short name used on the command line and in `weights.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Distilled => "distill",
            Self::Sr540p => "540p_sr",
            Self::Sr1080p => "1080p_sr",
        }
    }
}

impl fmt::Display for DitVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DitVariant {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|v| v.name() == s || (s == "distilled" && *v == Self::Distilled))
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown model variant {s:?}; expected one of base, distill, 540p_sr, 1080p_sr"
                ))
            })
    }
}
