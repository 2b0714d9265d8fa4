//! What an engine loads: the generation mode (base DiT, output resolution, conditioning inputs,
//! video decoder), the published components it needs, where their folders are, and the sizes a
//! resolution preset generates at.
//!
//! The table follows what the official pipeline loads for each mode (GAIR-NLP/daVinci-MagiHuman,
//! `inference/pipeline/video_generate.py`), minus what a mode never runs:
//!
//! | part of the mode | components |
//! |---|---|
//! | always | `t5gemma` (prompt encoder), `stable_audio` (its VAE decodes the output audio) |
//! | DiT | `distill` (8 steps, no CFG) or `base` (32 steps, CFG) |
//! | video decoder | `turbo_vae` (the default, as in every official example), or `wan_vae` |
//! | TI2V: a reference image | `wan_vae` (its encoder turns the image into the first latent frame) |
//! | a reference audio | `stable_audio` again (its encoder; same file) |
//! | 540p / 1080p output | `540p_sr` / `1080p_sr` (the super-resolution DiT after the 256p stage) |
//!
//! The official pipeline also loads the Wan VAE when it decodes with Turbo-VAED and has no image
//! to encode; Cadence does not, so T2V with Turbo-VAED needs no `wan_vae`. The official
//! super-resolution examples run the `base` DiT for the 256p stage; any [`BaseModel`] works here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use cadence_core::{Error, Result};
use cadence_model::DitVariant;

/// Component ids of the embedded manifest, as the mode table names them.
pub mod ids {
    /// Base DiT.
    pub const BASE: &str = "base";
    /// Distilled DiT.
    pub const DISTILL: &str = "distill";
    /// Super-resolution DiT for 540p.
    pub const SR_540P: &str = "540p_sr";
    /// Super-resolution DiT for 1080p.
    pub const SR_1080P: &str = "1080p_sr";
    /// Turbo-VAED video decoder.
    pub const TURBO_VAE: &str = "turbo_vae";
    /// T5Gemma text encoder.
    pub const T5GEMMA: &str = "t5gemma";
    /// Stable Audio Open (its audio VAE).
    pub const STABLE_AUDIO: &str = "stable_audio";
    /// Wan2.2 VAE.
    pub const WAN_VAE: &str = "wan_vae";
}

/// The DiT that runs the base-resolution (256p) stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BaseModel {
    /// 8 steps, no guidance: the fast one.
    Distilled,
    /// 32 steps with classifier-free guidance.
    Base,
}

/// Output resolution; above 256p a super-resolution stage follows the base stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Resolution {
    /// 448x256: the base stage only.
    #[cfg_attr(feature = "clap", value(name = "256p"))]
    P256,
    /// 896x512: 448x256, then the 540p super-resolution model.
    #[cfg_attr(feature = "clap", value(name = "540p"))]
    P540,
    /// 1920x1088: 448x256, then the 1080p super-resolution model.
    #[cfg_attr(feature = "clap", value(name = "1080p"))]
    P1080,
}

impl BaseModel {
    /// The DiT variant of the base stage.
    pub fn variant(self) -> DitVariant {
        match self {
            Self::Base => DitVariant::Base,
            Self::Distilled => DitVariant::Distilled,
        }
    }

    /// The component holding its weights.
    pub fn component(self) -> &'static str {
        match self {
            Self::Base => ids::BASE,
            Self::Distilled => ids::DISTILL,
        }
    }

    /// `base` or `distilled`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Distilled => "distilled",
        }
    }
}

/// Pixel area of the base stage the models were trained at (448x256).
const BASE_AREA: f64 = 448.0 * 256.0;

impl Resolution {
    /// The super-resolution DiT this resolution runs after the base stage, if any.
    pub fn sr_variant(self) -> Option<DitVariant> {
        match self {
            Self::P256 => None,
            Self::P540 => Some(DitVariant::Sr540p),
            Self::P1080 => Some(DitVariant::Sr1080p),
        }
    }

    /// `256p`, `540p` or `1080p`.
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "256p",
            Self::P540 => "540p",
            Self::P1080 => "1080p",
        }
    }

    /// The output size of the preset, as the official examples have it.
    pub fn output_size(self) -> (u32, u32) {
        match self {
            Self::P256 => (448, 256),
            Self::P540 => (896, 512),
            Self::P1080 => (1920, 1088),
        }
    }

    /// The base-stage size and, with super-resolution, the output size, for the preset's own
    /// output or a `custom` output shape. The base stage works at the training area (448x256):
    /// the output's shape scaled to that area on the 32-pixel grid, never larger than the
    /// output, so the presets come out as the official examples have them (896x512 and
    /// 1920x1088 from 448x256).
    pub fn stage_sizes(self, custom: Option<(u32, u32)>) -> ((u32, u32), Option<(u32, u32)>) {
        let output = custom.unwrap_or(self.output_size());
        match self {
            Self::P256 => (output, None),
            Self::P540 | Self::P1080 => (base_size(output), Some(output)),
        }
    }
}

/// The base-stage size for a super-resolution output (see [`Resolution::stage_sizes`]).
fn base_size((w, h): (u32, u32)) -> (u32, u32) {
    if w == 0 || h == 0 {
        return (w, h); // refused by the request's validation, with its message
    }
    let scale = (BASE_AREA / (f64::from(w) * f64::from(h))).sqrt().min(1.0);
    let side = |px: u32| ((f64::from(px) * scale / 32.0).round() as u32).max(1) * 32;
    (side(w).min(w), side(h).min(h))
}

/// Which decoder turns video latents into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum VideoDecoder {
    /// Turbo-VAED, the fast distilled decoder every official example uses.
    #[default]
    Turbo,
    /// The full Wan2.2 VAE decoder.
    Wan,
}

/// A generation mode, as the CLI's flags describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// The base-stage DiT.
    pub dit: BaseModel,
    /// TI2V: a reference image is given.
    pub image: bool,
    /// A reference audio is given.
    pub reference_audio: bool,
    /// Output resolution.
    pub resolution: Resolution,
    /// Which decoder turns the latents into frames.
    pub video_decoder: VideoDecoder,
}

/// What a component is used for in a mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Denoises the base-resolution latents.
    Dit,
    /// Denoises the upscaled latents.
    SuperResolution,
    /// Encodes the prompt.
    TextEncoder,
    /// Decodes video latents to frames.
    VideoDecoder,
    /// Encodes the reference image.
    ImageEncoder,
    /// Decodes audio latents to the output waveform.
    AudioDecoder,
    /// Encodes the reference audio.
    AudioEncoder,
}

/// One component a mode needs, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// Component id in the manifest (one of [`ids`]).
    pub component: &'static str,
    /// What the mode uses it for.
    pub role: Role,
}

impl Mode {
    /// The distilled text-to-video mode at 256p, the fastest one.
    pub fn distilled_t2v() -> Self {
        Self {
            dit: BaseModel::Distilled,
            image: false,
            reference_audio: false,
            resolution: Resolution::P256,
            video_decoder: VideoDecoder::Turbo,
        }
    }

    /// Every use of a component in this mode; a component may appear under several roles.
    pub fn needs(&self) -> Vec<Need> {
        let need = |component, role| Need { component, role };
        let mut out = vec![
            need(self.dit.component(), Role::Dit),
            need(ids::T5GEMMA, Role::TextEncoder),
            need(
                match self.video_decoder {
                    VideoDecoder::Turbo => ids::TURBO_VAE,
                    VideoDecoder::Wan => ids::WAN_VAE,
                },
                Role::VideoDecoder,
            ),
            need(ids::STABLE_AUDIO, Role::AudioDecoder),
        ];
        match self.resolution {
            Resolution::P256 => {}
            Resolution::P540 => out.push(need(ids::SR_540P, Role::SuperResolution)),
            Resolution::P1080 => out.push(need(ids::SR_1080P, Role::SuperResolution)),
        }
        if self.image {
            out.push(need(ids::WAN_VAE, Role::ImageEncoder));
        }
        if self.reference_audio {
            out.push(need(ids::STABLE_AUDIO, Role::AudioEncoder));
        }
        out
    }

    /// Whether the Wan2.2 VAE is loaded: to encode a reference image, or as the video decoder.
    pub fn needs_wan(&self) -> bool {
        self.image || self.video_decoder == VideoDecoder::Wan
    }

    /// The component ids to fetch or check for this mode, each once, in [`Mode::needs`] order.
    pub fn components(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for n in self.needs() {
            if !out.contains(&n.component) {
                out.push(n.component);
            }
        }
        out
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dit = self.dit.name();
        let input = if self.image { "TI2V" } else { "T2V" };
        let res = self.resolution.name();
        write!(f, "{dit} {input} {res}")?;
        if self.reference_audio {
            write!(f, " with reference audio")?;
        }
        if self.video_decoder == VideoDecoder::Wan {
            write!(f, " (Wan VAE decoder)")?;
        }
        Ok(())
    }
}

/// Where each component's files are: a folder per component id (a weights directory's
/// sub-folder, or a Hugging Face cache snapshot). `cadence-weights` fills it from the cache or a
/// weights directory; an application can fill it by hand. The engine needs no downloader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelDirs(BTreeMap<String, PathBuf>);

impl ModelDirs {
    /// No folders yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the folder of component `id` (one of [`ids`]).
    pub fn insert(&mut self, id: impl Into<String>, dir: impl Into<PathBuf>) -> &mut Self {
        self.0.insert(id.into(), dir.into());
        self
    }

    /// The folder of component `id`, or an error naming the component and what needs it.
    pub fn get(&self, id: &str, needed_for: &dyn fmt::Display) -> Result<&Path> {
        self.0.get(id).map(PathBuf::as_path).ok_or_else(|| {
            Error::MissingWeights(format!(
                "no folder was given for the component {id:?} ({needed_for} needs it)"
            ))
        })
    }

    /// Fails, naming the first, when a component `mode` needs has no folder.
    pub fn require(&self, mode: &Mode) -> Result<()> {
        for id in mode.components() {
            self.get(id, mode)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadence_weights::Manifest;

    fn all_modes() -> Vec<Mode> {
        let mut out = Vec::new();
        for dit in [BaseModel::Base, BaseModel::Distilled] {
            for image in [false, true] {
                for reference_audio in [false, true] {
                    for resolution in [Resolution::P256, Resolution::P540, Resolution::P1080] {
                        for video_decoder in [VideoDecoder::Turbo, VideoDecoder::Wan] {
                            out.push(Mode {
                                dit,
                                image,
                                reference_audio,
                                resolution,
                                video_decoder,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn distilled_t2v_needs_the_documented_set() {
        let m = Mode::distilled_t2v();
        assert_eq!(
            m.components(),
            ["distill", "t5gemma", "turbo_vae", "stable_audio"]
        );
        assert_eq!(m.to_string(), "distilled T2V 256p");
    }

    #[test]
    fn each_flag_adds_its_component() {
        let base = Mode {
            dit: BaseModel::Base,
            ..Mode::distilled_t2v()
        };
        assert_eq!(
            base.components(),
            ["base", "t5gemma", "turbo_vae", "stable_audio"]
        );
        let ti2v = Mode {
            image: true,
            ..base
        };
        assert!(ti2v.needs().contains(&Need {
            component: ids::WAN_VAE,
            role: Role::ImageEncoder
        }));
        let audio = Mode {
            reference_audio: true,
            ..base
        };
        assert!(audio.needs().contains(&Need {
            component: ids::STABLE_AUDIO,
            role: Role::AudioEncoder
        }));
        assert_eq!(
            audio.components(),
            base.components(),
            "same file as the decoder"
        );
        let p540 = Mode {
            resolution: Resolution::P540,
            ..base
        };
        assert_eq!(p540.components().last(), Some(&ids::SR_540P));
        let p1080 = Mode {
            resolution: Resolution::P1080,
            ..base
        };
        assert_eq!(p1080.components().last(), Some(&ids::SR_1080P));
        let wan = Mode {
            video_decoder: VideoDecoder::Wan,
            ..base
        };
        assert!(wan.components().contains(&ids::WAN_VAE));
        assert!(!wan.components().contains(&ids::TURBO_VAE));
    }

    #[test]
    fn every_mode_names_only_components_of_the_embedded_manifest() {
        let manifest = Manifest::embedded().unwrap();
        let mut used = std::collections::BTreeSet::new();
        for mode in all_modes() {
            let ids = mode.components();
            manifest.select(&ids).unwrap();
            used.extend(ids);
        }
        let defined: std::collections::BTreeSet<&str> = manifest
            .components()
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(used, defined, "every component is needed by some mode");
    }

    #[test]
    fn super_resolution_presets_start_from_the_official_base_size() {
        assert_eq!(base_size((896, 512)), (448, 256));
        assert_eq!(base_size((1920, 1088)), (448, 256));
        // Portrait keeps its shape; small outputs are not enlarged.
        assert_eq!(base_size((512, 896)), (256, 448));
        assert_eq!(base_size((320, 192)), (320, 192));
        assert_eq!(base_size((0, 512)), (0, 512));
        assert_eq!(
            Resolution::P540.stage_sizes(None),
            ((448, 256), Some((896, 512)))
        );
        assert_eq!(
            Resolution::P256.stage_sizes(Some((64, 64))),
            ((64, 64), None)
        );
    }

    #[test]
    fn folders_are_required_for_every_component_of_a_mode() {
        let mode = Mode::distilled_t2v();
        let mut dirs = ModelDirs::new();
        for id in ["distill", "t5gemma", "turbo_vae"] {
            dirs.insert(id, format!("/w/{id}"));
        }
        let e = dirs.require(&mode).unwrap_err().to_string();
        assert!(
            e.contains("stable_audio") && e.contains("distilled T2V 256p"),
            "{e}"
        );
        dirs.insert(ids::STABLE_AUDIO, "/w/a");
        dirs.require(&mode).unwrap();
        assert_eq!(dirs.get("distill", &mode).unwrap(), Path::new("/w/distill"));
    }
}
