//! From flags to what the engine and the weights crate understand: a [`Mode`], the component
//! ids, the manifest, the places to search and the component folders.

use std::path::Path;

use cadence_pipeline::models::{BaseModel, Mode, ModelDirs, Resolution, VideoDecoder};
use cadence_weights::{HubSettings, Manifest, WeightsRoot};

use crate::args::{ModeArgs, SelectArgs};
use crate::errors::{from_weights, CliError};

impl ModeArgs {
    /// The generation mode these flags describe, with or without a reference image / audio.
    pub fn to_mode(&self, image: bool, reference_audio: bool) -> Mode {
        Mode {
            dit: self.model,
            image,
            reference_audio,
            resolution: self.resolution,
            video_decoder: self.video_decoder,
        }
    }

    /// The same flags as `cadence fetch` takes them, for messages (`cadence fetch --model base`).
    pub fn fetch_flags(&self, image: bool, audio: bool) -> String {
        let mut out = String::new();
        if self.model == BaseModel::Base {
            out.push_str(" --model base");
        }
        if self.resolution != Resolution::P256 {
            out.push_str(&format!(" --resolution {}", self.resolution.name()));
        }
        if self.video_decoder == VideoDecoder::Wan {
            out.push_str(" --video-decoder wan");
        }
        if image {
            out.push_str(" --image");
        }
        if audio {
            out.push_str(" --audio");
        }
        out
    }
}

impl SelectArgs {
    /// The component ids to work on, and a description of the selection for messages.
    pub fn components(&self, manifest: &Manifest) -> Result<(Vec<String>, String), CliError> {
        if self.all {
            let ids = manifest.components().iter().map(|c| c.id.clone()).collect();
            return Ok((ids, "every component".into()));
        }
        if !self.component.is_empty() {
            manifest.select(&self.component).map_err(from_weights)?;
            return Ok((self.component.clone(), self.component.join(", ")));
        }
        let mode = self.mode.to_mode(self.image, self.audio);
        let ids = mode.components().into_iter().map(String::from).collect();
        Ok((ids, format!("mode {mode}")))
    }
}

/// The folder of every component `mode` needs, where `root` finds it.
pub fn model_dirs(
    root: &WeightsRoot,
    manifest: &Manifest,
    mode: &Mode,
) -> Result<ModelDirs, CliError> {
    let mut dirs = ModelDirs::new();
    for id in mode.components() {
        let component = manifest.get(id).map_err(from_weights)?;
        let located = root.component_dir(component).map_err(from_weights)?;
        dirs.insert(id, located.dir);
    }
    Ok(dirs)
}

/// The built-in manifest, or `path` when given.
pub fn manifest(path: Option<&Path>) -> Result<Manifest, CliError> {
    match path {
        Some(p) => Manifest::load(p),
        None => Manifest::embedded(),
    }
    .map_err(from_weights)
}

/// The places to search for weights: `weights_dir`, then the Hugging Face cache when the
/// environment names one.
pub fn weights_root(weights_dir: Option<&Path>) -> Result<WeightsRoot, CliError> {
    match HubSettings::from_env() {
        Ok(hub) => Ok(WeightsRoot::from_settings(weights_dir, &hub)),
        // No home directory and no HF_* variable: an explicit folder still works.
        Err(e) => match weights_dir {
            Some(dir) => Ok(WeightsRoot::new(vec![cadence_weights::Source::Dir(
                dir.to_path_buf(),
            )])),
            None => Err(from_weights(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_args(model: BaseModel, resolution: Resolution) -> ModeArgs {
        ModeArgs {
            model,
            resolution,
            video_decoder: VideoDecoder::Turbo,
        }
    }

    #[test]
    fn flags_map_onto_the_mode_table() {
        let m = mode_args(BaseModel::Distilled, Resolution::P256).to_mode(false, false);
        assert_eq!(m, Mode::distilled_t2v());
        let m = mode_args(BaseModel::Base, Resolution::P1080).to_mode(true, true);
        assert_eq!(m.to_string(), "base TI2V 1080p with reference audio");
    }

    #[test]
    fn fetch_flags_round_trip_the_mode() {
        let a = mode_args(BaseModel::Base, Resolution::P540);
        assert_eq!(
            a.fetch_flags(true, false),
            " --model base --resolution 540p --image"
        );
        assert_eq!(
            mode_args(BaseModel::Distilled, Resolution::P256).fetch_flags(false, false),
            ""
        );
    }
}
