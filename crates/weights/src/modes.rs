//! Which components a generation mode needs.
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
//! super-resolution examples run the `base` DiT for the 256p stage; any [`Dit`] works here.

use std::fmt;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dit {
    /// 32 steps with classifier-free guidance.
    Base,
    /// 8 steps, no guidance.
    Distill,
}

/// Output resolution; above 256p a super-resolution stage follows the base stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// 256p: base stage only.
    P256,
    /// 540p: base stage, then the 540p super-resolution DiT.
    P540,
    /// 1080p: base stage, then the 1080p super-resolution DiT.
    P1080,
}

/// Which decoder turns video latents into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    pub dit: Dit,
    /// TI2V: a reference image is given.
    pub image: bool,
    /// A reference audio is given.
    pub reference_audio: bool,
    /// Output resolution.
    pub resolution: Resolution,
    /// Video decoder.
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
            dit: Dit::Distill,
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
            need(
                match self.dit {
                    Dit::Base => ids::BASE,
                    Dit::Distill => ids::DISTILL,
                },
                Role::Dit,
            ),
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
        let dit = match self.dit {
            Dit::Base => "base",
            Dit::Distill => "distilled",
        };
        let input = if self.image { "TI2V" } else { "T2V" };
        let res = match self.resolution {
            Resolution::P256 => "256p",
            Resolution::P540 => "540p",
            Resolution::P1080 => "1080p",
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Manifest;

    fn all_modes() -> Vec<Mode> {
        let mut out = Vec::new();
        for dit in [Dit::Base, Dit::Distill] {
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
            dit: Dit::Base,
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
}
