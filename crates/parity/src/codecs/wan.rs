//! `wan22_vae_encode` / `wan22_vae_decode` cases: the Wan2.2 VAE against the reference, in f32
//! on the given device, every intermediate the case holds included.

use candle_core::{DType, Device, Tensor};

use crate::fixtures::Case;
use cadence_core::{CancelToken, Error, Result};

use super::checker::{streamed_in_order, Checker};
use cadence_codec::video::{frames_u8, patchify, LatentNorm};
use cadence_codec::{StateDict, WanConfig, WanVae};

/// The case's VAE (`config.WanVAE_`, `weights.safetensors`) in `dtype` on `device`.
pub(super) fn load(case: &Case, dtype: DType, device: &Device) -> Result<WanVae> {
    let cfg: WanConfig = serde_json::from_value(
        case.get("/config/WanVAE_")
            .cloned()
            .ok_or_else(|| Error::Config("case.json has no config.WanVAE_".into()))?,
    )
    .map_err(|e| Error::Config(format!("config.WanVAE_: {e}")))?;
    let sd = StateDict::from_safetensors(case.file("weights.safetensors"), "")?;
    WanVae::from_state_dict(&sd, &cfg, dtype, device)
}

/// Encodes `in.video` and checks the patchified input, the encoder chunks, `conv1` and the
/// latent, then the latent of the public entry point (image or video).
pub(super) fn check_encode(case: &Case, device: &Device) -> Result<()> {
    let vae = load(case, DType::F32, device)?;
    let c = Checker::new(case, device)?;
    // Parity runs are never cancelled.
    let never = CancelToken::new();
    let video = c.get("in.video")?;
    if c.has("mid.patchified") {
        c.check("mid.patchified", &patchify(&video)?)?;
    }
    let enc = vae.encode_detailed(&video, &never)?;
    for (i, chunk) in enc.encoder_chunks.iter().enumerate() {
        let name = format!("mid.encoder_chunk{i}");
        if c.has(&name) {
            c.check(&name, chunk)?;
        }
    }
    if c.has("mid.conv1_out") {
        c.check("mid.conv1_out", &enc.conv1_out)?;
    }
    c.check_declared("out.latent", || Ok(enc.latent))?;
    // The public entry points give the same latent.
    c.check_declared("out.latent", || {
        if video.dim(2)? == 1 {
            vae.encode_image(&video.squeeze(2)?, &never)
        } else {
            vae.encode_video(&video, &never)
        }
    })?;
    c.finish()
}

/// Decodes `in.latent` and checks the de-normalised latent, the decoder chunks, the streamed
/// video (chunks in order, 1 frame then 4 per latent frame), and the uint8 frames of both the
/// streamed chunks and the collecting decoder.
pub(super) fn check_decode(case: &Case, device: &Device) -> Result<()> {
    let vae = load(case, DType::F32, device)?;
    let c = Checker::new(case, device)?;
    let never = CancelToken::new();
    let latent = c.get("in.latent")?;
    if c.has("mid.z_denorm") {
        let norm = LatentNorm::new(DType::F32, device)?;
        c.check("mid.z_denorm", &norm.denormalize(&latent)?)?;
    }
    let mut i = 0;
    vae.decode_patches(&latent, &never, |p| {
        let name = format!("mid.decoder_chunk{i}");
        i += 1;
        if c.has(&name) {
            c.check(&name, p)?;
        }
        Ok(())
    })?;
    // Streaming: frame chunks arrive in order, 1 frame then 4 per latent frame.
    let chunks = streamed_in_order(|on| vae.decode_streaming(&latent, &never, on))?;
    let video = Tensor::cat(
        &chunks.iter().map(|c| c.video.clone()).collect::<Vec<_>>(),
        2,
    )?;
    c.check_declared("out.video", || Ok(video))?;
    c.check_declared("out.frames_u8", || {
        let u8_chunks: Vec<Tensor> = chunks
            .iter()
            .map(|ch| ch.frames_u8())
            .collect::<candle_core::Result<_>>()?;
        Ok(Tensor::cat(&u8_chunks, 1)?.squeeze(0)?)
    })?;
    c.check_declared("out.frames_u8", || {
        Ok(frames_u8(&vae.decode(&latent, &never)?)?.squeeze(0)?)
    })?;
    c.finish()
}
