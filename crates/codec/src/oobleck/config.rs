//! Oobleck configuration, read from Stable Audio Open's `model_config.json`
//! (`["model"]["pretransform"]["config"]` and the top-level `sample_rate`).

use std::path::Path;

use cadence_core::{Error, Result};
use serde::Deserialize;
use serde_json::Value;

/// `OobleckEncoder` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EncoderConfig {
    /// Audio channels in (2).
    pub in_channels: usize,
    /// Base width (128 real).
    pub channels: usize,
    /// Width multipliers per block (`[1, 2, 4, 8, 16]`).
    pub c_mults: Vec<usize>,
    /// Downsampling stride per block (`[2, 4, 4, 8, 8]`).
    pub strides: Vec<usize>,
    /// Output channels: mean and scale of the VAE bottleneck (128).
    pub latent_dim: usize,
    /// SnakeBeta activations (the only kind supported).
    #[serde(default = "yes")]
    pub use_snake: bool,
}

/// `OobleckDecoder` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DecoderConfig {
    /// Audio channels out (2).
    pub out_channels: usize,
    /// Base width (128 real).
    pub channels: usize,
    /// Width multipliers per block (`[1, 2, 4, 8, 16]`).
    pub c_mults: Vec<usize>,
    /// Upsampling stride per block, in encoder order (`[2, 4, 4, 8, 8]`).
    pub strides: Vec<usize>,
    /// Latent channels in (64).
    pub latent_dim: usize,
    /// SnakeBeta activations (the only kind supported).
    #[serde(default = "yes")]
    pub use_snake: bool,
    /// `tanh` on the output (false for Stable Audio Open: the waveform is unbounded).
    #[serde(default)]
    pub final_tanh: bool,
}

fn yes() -> bool {
    true
}

/// The audio autoencoder's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OobleckConfig {
    /// Encoder arguments.
    pub encoder: EncoderConfig,
    /// Decoder arguments.
    pub decoder: DecoderConfig,
    /// Latent channels (64).
    pub latent_dim: usize,
    /// Samples per latent frame (2048).
    pub downsampling_ratio: usize,
    /// Sample rate the model was trained at (44100; the pipeline runs it at 51200).
    pub sample_rate: u32,
}

/// Most encoder or decoder blocks a config may list (the released VAE has 5).
pub const MAX_BLOCKS: usize = 16;

impl OobleckConfig {
    /// Reads `model_config.json`.
    pub fn from_model_config(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let v: Value = cadence_core::error::read_json(path)?;
        let pre = v.pointer("/model/pretransform/config").ok_or_else(|| {
            Error::Config(format!("{}: no model.pretransform.config", path.display()))
        })?;
        let rate = v
            .get("sample_rate")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                Error::Config(format!("{}: no top-level sample_rate", path.display()))
            })?;
        Self::from_pretransform(pre, rate)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// From the `pretransform.config` object and the sample rate.
    pub fn from_pretransform(pre: &Value, sample_rate: u64) -> Result<Self> {
        let field = |name: &str| {
            pre.get(name)
                .ok_or_else(|| Error::Config(format!("pretransform config has no {name}")))
        };
        let parse = |v: &Value, what: &str| -> Result<Value> {
            v.get("config")
                .cloned()
                .ok_or_else(|| Error::Config(format!("pretransform {what} has no config")))
        };
        let enc = field("encoder")?;
        let dec = field("decoder")?;
        for (v, what) in [(enc, "encoder"), (dec, "decoder")] {
            if v.get("type").and_then(Value::as_str) != Some("oobleck") {
                return Err(Error::Config(format!(
                    "pretransform {what} type is not oobleck"
                )));
            }
        }
        let bottleneck = field("bottleneck")?.get("type").and_then(Value::as_str);
        if bottleneck != Some("vae") {
            return Err(Error::Config(format!(
                "bottleneck type {bottleneck:?} is not supported (only vae)"
            )));
        }
        let json = |e: serde_json::Error| Error::Config(format!("pretransform config: {e}"));
        let usize_field = |name: &str| -> Result<usize> {
            field(name)?
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| Error::Config(format!("pretransform {name} is not an integer")))
        };
        let cfg = Self {
            encoder: serde_json::from_value(parse(enc, "encoder")?).map_err(json)?,
            decoder: serde_json::from_value(parse(dec, "decoder")?).map_err(json)?,
            latent_dim: usize_field("latent_dim")?,
            downsampling_ratio: usize_field("downsampling_ratio")?,
            sample_rate: u32::try_from(sample_rate)
                .map_err(|_| Error::Config(format!("sample_rate {sample_rate}")))?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that the halves fit together and every size is one a loader can multiply.
    pub fn validate(&self) -> Result<()> {
        let (e, d) = (&self.encoder, &self.decoder);
        let bad = |m: String| Err(Error::Config(format!("Oobleck: {m}")));
        if !e.use_snake || !d.use_snake {
            return bad("only SnakeBeta activations (use_snake = true) are supported".into());
        }
        if e.c_mults.len() != e.strides.len() || d.c_mults.len() != d.strides.len() {
            return bad("c_mults and strides must have the same length".into());
        }
        if e.strides.len().max(d.strides.len()) > MAX_BLOCKS {
            return bad(format!(
                "more than {MAX_BLOCKS} blocks per half (the released VAE has 5)"
            ));
        }
        // The widths multiply (channels * c_mult * kernel) when the loader lists tensors.
        cadence_core::sizes::check_widths(
            "Oobleck config",
            [
                ("encoder in_channels", e.in_channels),
                ("encoder channels", e.channels),
                ("encoder latent_dim", e.latent_dim),
                ("decoder out_channels", d.out_channels),
                ("decoder channels", d.channels),
                ("decoder latent_dim", d.latent_dim),
            ]
            .into_iter()
            .chain(e.c_mults.iter().map(|&m| ("encoder c_mults", m)))
            .chain(d.c_mults.iter().map(|&m| ("decoder c_mults", m)))
            .chain(e.strides.iter().map(|&s| ("encoder strides", s)))
            .chain(d.strides.iter().map(|&s| ("decoder strides", s))),
        )?;
        if e.strides
            .iter()
            .chain(&d.strides)
            .any(|&s| s == 0 || s % 2 != 0)
        {
            return bad("strides must be even".into());
        }
        if e.latent_dim != 2 * self.latent_dim || d.latent_dim != self.latent_dim {
            return bad(format!(
                "encoder latent_dim {} must be twice the latent ({}), decoder's equal to it",
                e.latent_dim, self.latent_dim
            ));
        }
        let ratio = e
            .strides
            .iter()
            .try_fold(1usize, |r, &s| r.checked_mul(s))
            .unwrap_or(usize::MAX);
        if ratio != self.downsampling_ratio {
            return bad(format!(
                "strides multiply to {ratio}, not {}",
                self.downsampling_ratio
            ));
        }
        Ok(())
    }
}
