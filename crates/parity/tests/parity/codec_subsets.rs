//! The parity checkers compare the tensors a case declares: a case holding any subset of a
//! computation the reference can record (an audio-VAE decode alone, say) is checked as it is,
//! and a case holding nothing a checker computes fails. Each subset is built in a temporary
//! folder from a real fixture case (its case.json, weights and the chosen io tensors).

use std::collections::HashMap;

use cadence_parity::codecs::check_case;
use cadence_parity::fixtures::{root, Case};
use candle_core::{Device, Tensor};
use tempfile::TempDir;

/// A copy of fixture case `codecs/<name>` whose io.safetensors holds only `keep`.
fn subset_case(name: &str, keep: &[&str]) -> (TempDir, Case) {
    let src = root().join("codecs").join(name);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != "io.safetensors") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let io = candle_core::safetensors::load(src.join("io.safetensors"), &Device::Cpu).unwrap();
    let kept: HashMap<String, Tensor> = keep
        .iter()
        .map(|k| (k.to_string(), io[*k].clone()))
        .collect();
    candle_core::safetensors::save(&kept, dir.path().join("io.safetensors")).unwrap();
    let case = Case::open(dir.path()).unwrap();
    (dir, case)
}

#[test]
fn an_audio_vae_decode_alone_is_checked() {
    // Used to fail: "io.safetensors has no in.waveform".
    let (_dir, case) = subset_case("oobleck_tiny", &["in.latent", "out.waveform"]);
    check_case(&case, &Device::Cpu).unwrap();
}

#[test]
fn an_audio_vae_encode_alone_is_checked() {
    let keep = [
        "in.waveform",
        "in.noise",
        "out.latent_mean",
        "out.latent_sample",
    ];
    let (_dir, case) = subset_case("oobleck_tiny", &keep);
    check_case(&case, &Device::Cpu).unwrap();
    let (_dir, case) = subset_case("oobleck_tiny", &["in.waveform", "out.latent_mean"]);
    check_case(&case, &Device::Cpu).unwrap();
}

#[test]
fn audio_post_parts_are_checked_alone() {
    let (_dir, case) = subset_case("audio_post", &["in.wave_small", "out.wave_small_resampled"]);
    check_case(&case, &Device::Cpu).unwrap();
    let (_dir, case) = subset_case("audio_post", &["in.latent_audio", "out.audio_44100"]);
    check_case(&case, &Device::Cpu).unwrap();
}

#[test]
fn video_decodes_are_checked_on_the_outputs_they_hold() {
    let (_dir, case) = subset_case(
        "turbo_vaed_tiny_decode",
        &["in.latent_T3", "out.frames_u8_T3"],
    );
    check_case(&case, &Device::Cpu).unwrap();
    let (_dir, case) = subset_case("wan22_vae_tiny_decode", &["in.latent", "out.frames_u8"]);
    check_case(&case, &Device::Cpu).unwrap();
}

#[test]
fn a_case_with_nothing_to_compare_fails() {
    let (_dir, case) = subset_case("oobleck_tiny", &["in.noise"]);
    let e = check_case(&case, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("neither in.latent"), "{e}");
    let (_dir, case) = subset_case("audio_post", &["in.wave_small"]);
    let e = check_case(&case, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("nothing to check"), "{e}");
}
