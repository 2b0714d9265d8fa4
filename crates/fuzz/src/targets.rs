//! The fuzz targets: each parser of untrusted bytes, driven as the product drives it, with
//! its seeds and the most memory one input may make it hold.
//!
//! Parsers that take a path read their input from a scratch file written for each case (one
//! scratch folder per thread). A parse function returns `Ok` when the parser accepted the
//! input and `Err(message)` when it refused it; both are fine, a panic or a hang is not.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use cadence_codec::loader::{pickle, TorchArchive};
use cadence_codec::{
    turbo, Oobleck, OobleckConfig, StateDict, TurboConfig, TurboVaed, WanConfig, WanVae,
};
use cadence_core::{Checkpoint, TensorSpec};
use cadence_media::input::audio::MAX_INPUT_SAMPLES;
use cadence_media::input::image::MAX_IMAGE_BYTES;
use cadence_media::{AudioInputOptions, DecodedAudio, DecodedImage, MediaSource};
use cadence_model::weights::accepted_tensors;
use cadence_model::DitConfig;
use cadence_text::TextEncoderConfig;
use cadence_weights::Manifest;
use candle_core::{DType, Device};

use crate::mutate::repair_png_crcs;
use crate::seeds;

/// A parser under test.
pub struct Target {
    /// Short name, printed with the counts.
    pub name: &'static str,
    /// Valid inputs to mutate.
    pub seeds: Vec<Vec<u8>>,
    /// Runs the parser on one input.
    pub parse: fn(&[u8]) -> Result<(), String>,
    /// Most bytes the parser may hold at once for an input of this many bytes.
    pub max_peak: fn(usize) -> usize,
    /// Turns a mutated seed into the parser's input: repairs checksums or wraps it in its
    /// container, so that the mutated fields reach the parser instead of a checksum test.
    pub finish: Option<fn(Vec<u8>) -> Vec<u8>>,
    /// Cases of the bounded run in `cargo test` (each target's share of about a minute on two
    /// cores in a test build).
    pub cases: u32,
}

const MIB: usize = 1 << 20;

/// Containers, indexes and configs: what they hold is at most their bytes, so 64 bytes per
/// input byte (tensors converted to f32 from 1-byte types, JSON trees of small values) plus
/// 4 MiB of fixed buffers (readers, candle's CPU storage; the seeds need under 1 MiB).
fn linear(len: usize) -> usize {
    64 * len + 4 * MIB
}

/// Images: the decoder may reserve its declared limit ([`MAX_IMAGE_BYTES`]) for a tiny input
/// that claims a large picture, then hold the RGB copy and a rotated copy of it.
fn image_bound(len: usize) -> usize {
    3 * MAX_IMAGE_BYTES as usize + linear(len)
}

/// Audio: at most [`MAX_INPUT_SAMPLES`] decoded f32 samples (the loader's cap), held with the
/// decoder's packet copy, the mono downmix and the resampled outputs (about four times the
/// decoded size in all).
fn audio_bound(len: usize) -> usize {
    4 * 4 * MAX_INPUT_SAMPLES + linear(len)
}

thread_local! {
    static SCRATCH: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

/// Writes `bytes` to `name` in this thread's scratch folder and returns its path.
fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let dir = s.get_or_insert_with(|| tempfile::tempdir().expect("a scratch folder"));
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("scratch file written");
        path
    })
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Loads every tensor of a checkpoint as f32 (bounds the reads of each tensor's bytes).
fn load_all(ckpt: &Checkpoint) -> Result<(), String> {
    for key in ckpt.stored().keys() {
        ckpt.load(key, DType::F32, &Device::Cpu).map_err(err)?;
    }
    let _ = ckpt.mismatch_report("", &[TensorSpec::new("a.weight", [2, 3])]);
    Ok(())
}

fn parse_safetensors(b: &[u8]) -> Result<(), String> {
    let path = scratch_file("model.safetensors", b);
    load_all(&Checkpoint::open(&path).map_err(err)?)
}

fn parse_index(b: &[u8]) -> Result<(), String> {
    let index = scratch_file("model.safetensors.index.json", b);
    let dir = index.parent().unwrap_or(Path::new("."));
    for (name, bytes) in seeds::index_shards() {
        scratch_file(name, &bytes);
    }
    load_all(&Checkpoint::open(dir).map_err(err)?)
}

fn parse_pickle(b: &[u8]) -> Result<(), String> {
    pickle::parse(b).map(drop).map_err(err)
}

fn parse_torch_zip(b: &[u8]) -> Result<(), String> {
    let path = scratch_file("checkpoint.pth", b);
    let archive = TorchArchive::open(&path, None).map_err(err)?;
    for key in archive.tensors().keys() {
        archive.load(key, &Device::Cpu).map_err(err)?;
    }
    // The Lightning entry of a Turbo-VAED checkpoint, where the seed has one.
    let _ = StateDict::from_lightning_ckpt(&path, turbo::CHECKPOINT_LAYOUT);
    Ok(())
}

// The config targets go on as the loaders and `cadence check` do before reading a weight: from
// the config to the list of tensors the model expects.

fn parse_dit_config(b: &[u8]) -> Result<(), String> {
    let cfg = DitConfig::from_json_file(&scratch_file("config.json", b)).map_err(err)?;
    accepted_tensors(&cfg);
    Ok(())
}

fn parse_text_config(b: &[u8]) -> Result<(), String> {
    let cfg = TextEncoderConfig::from_file(&scratch_file("config.json", b)).map_err(err)?;
    cfg.validate().map_err(err)?;
    cfg.tensor_specs();
    Ok(())
}

fn parse_turbo_config(b: &[u8]) -> Result<(), String> {
    let cfg = TurboConfig::from_file(scratch_file("turbo.json", b)).map_err(err)?;
    TurboVaed::tensor_specs(&cfg).map(drop).map_err(err)
}

fn parse_oobleck_config(b: &[u8]) -> Result<(), String> {
    let cfg =
        OobleckConfig::from_model_config(scratch_file("model_config.json", b)).map_err(err)?;
    Oobleck::tensor_specs(&cfg).map(drop).map_err(err)
}

fn parse_wan_config(b: &[u8]) -> Result<(), String> {
    let cfg: WanConfig = serde_json::from_slice(b).map_err(err)?;
    WanVae::tensor_specs(&cfg).map(drop).map_err(err)
}

fn parse_weights_toml(b: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(b).map_err(err)?;
    Manifest::parse(text, "fuzz").map(drop).map_err(err)
}

fn parse_image(b: &[u8]) -> Result<(), String> {
    let image = DecodedImage::decode(&MediaSource::from(b.to_vec())).map_err(err)?;
    image.reference(64, 48).map(drop).map_err(err)
}

fn parse_audio(b: &[u8]) -> Result<(), String> {
    let audio = DecodedAudio::decode(&MediaSource::from(b.to_vec())).map_err(err)?;
    audio.stereo(44_100).map_err(err)?;
    audio
        .reference(&AudioInputOptions::default())
        .map(drop)
        .map_err(err)
}

fn png_only(mut b: Vec<u8>) -> Vec<u8> {
    if b.starts_with(b"\x89PNG") {
        repair_png_crcs(&mut b);
    }
    b
}

/// A target without a `finish` step.
fn target(
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    parse: fn(&[u8]) -> Result<(), String>,
    max_peak: fn(usize) -> usize,
    cases: u32,
) -> Target {
    Target {
        name,
        seeds,
        parse,
        max_peak,
        finish: None,
        cases,
    }
}

/// Every target. The case counts make the bounded run take about 15 s of a test build on two
/// idle cores, 25 s on a loaded machine (the cheap parsers get more cases).
pub fn all() -> Vec<Target> {
    use seeds::*;
    vec![
        target(
            "safetensors",
            safetensors(),
            parse_safetensors,
            linear,
            8000,
        ),
        target("safetensors_index", index(), parse_index, linear, 8000),
        target("pickle", pickles(), parse_pickle, linear, 20_000),
        target("torch_zip", torch_zips(), parse_torch_zip, linear, 6000),
        Target {
            // The pickle mutated inside a valid archive (the zip's CRCs would refuse it).
            finish: Some(torch_zip),
            ..target("torch_zip_pickle", pickles(), parse_torch_zip, linear, 6000)
        },
        target("dit_config", dit_config(), parse_dit_config, linear, 8000),
        target(
            "text_config",
            text_config(),
            parse_text_config,
            linear,
            8000,
        ),
        target(
            "turbo_config",
            turbo_config(),
            parse_turbo_config,
            linear,
            8000,
        ),
        target(
            "oobleck_config",
            oobleck_config(),
            parse_oobleck_config,
            linear,
            8000,
        ),
        target("wan_config", wan_config(), parse_wan_config, linear, 12_000),
        target(
            "weights_toml",
            weights_toml(),
            parse_weights_toml,
            linear,
            4000,
        ),
        Target {
            finish: Some(png_only),
            ..target("image", images(), parse_image, image_bound, 6000)
        },
        target("wav", wavs(), parse_audio, audio_bound, 3000),
        target(
            "flac_mp3_m4a",
            compressed_audio(),
            parse_audio,
            audio_bound,
            3000,
        ),
    ]
}

/// The target named `name`.
pub fn named(name: &str) -> Target {
    all()
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
}
