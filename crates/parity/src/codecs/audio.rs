//! `oobleck` and `audio_post` cases: the Oobleck audio VAE and the audio glue (441/512 FFT
//! resample, post-processing, windowed reference-audio encode) against the reference. The audio
//! VAE runs in f32 in production as in the fixtures, so there is no bf16 variant. The FFT
//! resample reads its input back to the CPU (realfft) and returns it on the input's device.

use candle_core::{DType, Device, Tensor};

use crate::fixtures::Case;
use cadence_core::{CancelToken, Error, Result};

use super::checker::{suffix, Checker};
use cadence_codec::audio_path::resample_51200_to_44100;
use cadence_codec::oobleck::{MeanOnly, ReplayNoise};
use cadence_codec::{
    encode_reference_audio, latent_to_waveform_44100, Oobleck, OobleckConfig, ReferenceAudioConfig,
    StateDict,
};

/// The case's audio VAE (`config.pretransform_config`, `weights.safetensors`) on `device`.
fn load(case: &Case, device: &Device) -> Result<Oobleck> {
    let pre = case
        .get("/config/pretransform_config")
        .ok_or_else(|| Error::Config("case.json has no config.pretransform_config".into()))?;
    let rate = case.f64_at("/config/sample_rate").unwrap_or(44100.0) as u64;
    let cfg = OobleckConfig::from_pretransform(pre, rate)?;
    let sd = StateDict::from_safetensors(case.file("weights.safetensors"), "")?;
    Oobleck::from_state_dict(&sd, &cfg, device)
}

/// Whatever the case holds of: the decode (`in.latent` -> `out.waveform`, batched and
/// unbatched) and the encode (`in.waveform` -> the pre-bottleneck state, the mean latent, and
/// the sampled latent with the recorded `in.noise`). The reference can record either half
/// alone; a case with neither fails.
pub(super) fn check_oobleck(case: &Case, device: &Device) -> Result<()> {
    let vae = load(case, device)?;
    let c = Checker::new(case, device)?;
    // Parity runs are never cancelled.
    let never = CancelToken::new();
    if !c.has("in.latent") && !c.has("in.waveform") {
        return Err(Error::Config(format!(
            "{}: io.safetensors holds neither in.latent (decode) nor in.waveform (encode)",
            case.name
        )));
    }
    if c.has("in.latent") {
        let latent = c.get("in.latent")?;
        c.check_declared("out.waveform", || vae.decode(&latent, &never))?;
        // The pipeline decodes unbatched latents; same result.
        c.check_declared("out.waveform", || vae.decode(&latent.squeeze(0)?, &never))?;
    }
    if c.has("in.waveform") {
        let wave = c.get("in.waveform")?;
        c.check_declared("mid.pre_bottleneck", || {
            vae.encode_pre_bottleneck(&wave, &never)
        })?;
        c.check_declared("out.latent_mean", || {
            vae.encode(&wave, &mut MeanOnly, &never)
        })?;
        c.check_declared("out.latent_sample", || {
            let noise = c.get("in.noise")?;
            vae.encode(&wave, &mut ReplayNoise::new([noise]), &never)
        })?;
    }
    c.finish()
}

/// Reads `config.load_audio_and_encode` of an audio_post case.
fn reference_cfg(case: &Case) -> Result<(ReferenceAudioConfig, Option<f64>)> {
    let rate = case.f64_at("/config/load_audio_and_encode/sample_rate")? as u32;
    let window = case.f64_at("/config/load_audio_and_encode/audio_chunk_duration_s")?;
    let overlap = case.f64_at("/config/load_audio_and_encode/overlap_ratio")?;
    let seconds = case
        .get("/config/load_audio_and_encode/seconds")
        .and_then(|v| v.as_f64());
    Ok((
        ReferenceAudioConfig {
            sample_rate: rate,
            window_seconds: window,
            overlap,
        },
        seconds,
    ))
}

/// The FFT resample, post-processing (latent -> 51.2 kHz -> 44.1 kHz) and the reference-audio
/// encode of every clip, with replayed and with zero noise.
pub(super) fn check_audio_post(case: &Case, device: &Device) -> Result<()> {
    let vae = load(case, device)?;
    let c = Checker::new(case, device)?;
    let never = CancelToken::new();
    // (a) the 441/512 FFT resample: in.wave_<x> -> out.wave_<x>_resampled
    for input in c.names("in.wave_") {
        let tag = suffix(&input, "in.wave_");
        let name = format!("out.wave_{tag}_resampled");
        c.check_declared(&name, || resample_51200_to_44100(&c.get(&input)?))?;
    }
    // (b) post_process: DiT latent -> 51.2 kHz decode -> 44.1 kHz
    if c.has("in.latent_audio") {
        let latent = c.get("in.latent_audio")?;
        c.check_declared("mid.audio_51200", || {
            vae.decode(&latent.squeeze(0)?.t()?, &never)
        })?;
        c.check_declared("out.audio_44100", || {
            latent_to_waveform_44100(&vae, &latent, &never)
        })?;
    }
    // (c) reference audio: in.<clip>_pcm_s16 with replayed noise and with zero noise
    let clips: Vec<String> = c
        .names("in.")
        .into_iter()
        .filter(|n| n.ends_with("_pcm_s16"))
        .collect();
    if !clips.is_empty() {
        // Read only when a clip needs it: a case without clips need not state the windowing.
        let (cfg, seconds) = reference_cfg(case)?;
        for pcm_name in &clips {
            check_reference_clip(&c, &vae, pcm_name, &cfg, seconds)?;
        }
    }
    c.finish()
}

/// One reference-audio clip `in.<clip>_pcm_s16`: its window encodes and whichever of the
/// sampled (replayed noise) and mean latents the case holds.
fn check_reference_clip(
    c: &Checker,
    vae: &Oobleck,
    pcm_name: &str,
    cfg: &ReferenceAudioConfig,
    seconds: Option<f64>,
) -> Result<()> {
    let never = CancelToken::new();
    let clip = pcm_name
        .strip_prefix("in.")
        .and_then(|n| n.strip_suffix("_pcm_s16"))
        .unwrap_or_default();
    let pcm = c.get_as(pcm_name, DType::F32)?;
    let wave = (pcm / 32768.0)?;
    // The windows' encoder states do not depend on the noise: the mean run gives them.
    let mean = encode_reference_audio(vae, &wave, seconds, cfg, &mut MeanOnly, &never)?;
    for (k, h) in mean.window_pre_bottleneck.iter().enumerate() {
        let name = format!("mid.{clip}_chunk{k}_pre_bottleneck");
        if c.has(&name) {
            c.check(&name, h)?;
        }
    }
    c.check_declared(&format!("out.{clip}_latent_mean"), || Ok(mean.latent))?;
    c.check_declared(&format!("out.{clip}_latent_sample"), || {
        let noise: Vec<Tensor> = c
            .names(&format!("in.{clip}_noise_chunk"))
            .iter()
            .map(|n| c.get(n))
            .collect::<Result<_>>()?;
        let mut replay = ReplayNoise::new(noise);
        Ok(encode_reference_audio(vae, &wave, seconds, cfg, &mut replay, &never)?.latent)
    })?;
    Ok(())
}
