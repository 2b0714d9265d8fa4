//! Parity of the Wan2.2 VAE with the reference on every `wan22_vae_encode` / `wan22_vae_decode`
//! fixture case (f32, tolerances from each case.json).

mod common;

use cadence_codec::video::{frames_u8, patchify, LatentNorm};
use cadence_codec::{StateDict, WanConfig, WanVae};
use cadence_core::fixtures::{check_all, Case};
use cadence_core::{Error, Result};
use candle_core::{DType, Device, Tensor};
use common::Checker;

fn load(case: &Case) -> Result<WanVae> {
    let cfg: WanConfig = serde_json::from_value(
        case.get("/config/WanVAE_")
            .cloned()
            .ok_or_else(|| Error::Config("case.json has no config.WanVAE_".into()))?,
    )
    .map_err(|e| Error::Config(format!("config.WanVAE_: {e}")))?;
    let sd = StateDict::from_safetensors(case.file("weights.safetensors"), "")?;
    WanVae::from_state_dict(&sd, &cfg, DType::F32, &Device::Cpu)
}

#[test]
fn wan22_encode_matches_reference() {
    check_all(&["wan22_vae_encode"], |case| {
        let vae = load(case)?;
        let c = Checker::new(case)?;
        let video = c.get("in.video")?;
        if c.io.contains_key("mid.patchified") {
            c.check("mid.patchified", &patchify(&video)?)?;
        }
        let enc = vae.encode_detailed(&video)?;
        for (i, chunk) in enc.encoder_chunks.iter().enumerate() {
            let name = format!("mid.encoder_chunk{i}");
            if c.io.contains_key(&name) {
                c.check(&name, chunk)?;
            }
        }
        if c.io.contains_key("mid.conv1_out") {
            c.check("mid.conv1_out", &enc.conv1_out)?;
        }
        c.check("out.latent", &enc.latent)?;
        // The public entry points give the same latent.
        let t = video.dim(2)?;
        let again = if t == 1 {
            vae.encode_image(&video.squeeze(2)?)?
        } else {
            vae.encode_video(&video)?
        };
        c.check("out.latent", &again)?;
        c.finish()
    });
}

#[test]
fn wan22_decode_matches_reference() {
    check_all(&["wan22_vae_decode"], |case| {
        let vae = load(case)?;
        let c = Checker::new(case)?;
        let latent = c.get("in.latent")?;
        if c.io.contains_key("mid.z_denorm") {
            let norm = LatentNorm::new(DType::F32, &Device::Cpu)?;
            c.check("mid.z_denorm", &norm.denormalize(&latent)?)?;
        }
        let mut i = 0;
        vae.decode_patches(&latent, |p| {
            let name = format!("mid.decoder_chunk{i}");
            i += 1;
            if c.io.contains_key(&name) {
                c.check(&name, p)?;
            }
            Ok(())
        })?;
        // Streaming: frame chunks arrive in order, 1 frame then 4 per latent frame.
        let mut chunks = Vec::new();
        let mut next = 0;
        vae.decode_streaming(&latent, |chunk| {
            assert_eq!(chunk.first_frame, next);
            next += chunk.len();
            chunks.push(chunk);
            Ok(())
        })?;
        let video = Tensor::cat(
            &chunks.iter().map(|c| c.video.clone()).collect::<Vec<_>>(),
            2,
        )?;
        c.check("out.video", &video)?;
        let u8_chunks: Vec<Tensor> = chunks
            .iter()
            .map(|ch| ch.frames_u8())
            .collect::<candle_core::Result<_>>()?;
        let frames = Tensor::cat(&u8_chunks, 1)?.squeeze(0)?;
        c.check("out.frames_u8", &frames)?;
        c.check(
            "out.frames_u8",
            &frames_u8(&vae.decode(&latent)?)?.squeeze(0)?,
        )?;
        c.finish()
    });
}
