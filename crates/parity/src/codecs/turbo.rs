//! `turbo_vaed_decode` cases: every latent `in.latent<tag>` of a case is decoded in f32 on the
//! given device and its `out.video<tag>`, `out.frames_u8<tag>` and per-window
//! `mid.window<k>_{in,out}<tag>` are checked.

use candle_core::{DType, Device, Tensor};

use crate::fixtures::Case;
use cadence_core::{CancelToken, Error, Result};

use super::checker::{streamed_in_order, suffix, Checker};
use cadence_codec::video::frames_u8;
use cadence_codec::{StateDict, TurboConfig, TurboVaed};

/// The case's decoder (`config.json`, `weights.safetensors`) in `dtype` on `device`.
pub(super) fn load(case: &Case, dtype: DType, device: &Device) -> Result<TurboVaed> {
    let cfg = TurboConfig::from_file(case.file("config.json"))?;
    let sd = StateDict::from_safetensors(case.file("weights.safetensors"), "")?;
    TurboVaed::from_state_dict(&sd, &cfg, dtype, device)
}

/// Checks the windows, the streamed video (chunks in order, one per window) and its frames.
pub(super) fn check_decode(case: &Case, device: &Device) -> Result<()> {
    let vae = load(case, DType::F32, device)?;
    let c = Checker::new(case, device)?;
    // Parity runs are never cancelled.
    let never = CancelToken::new();
    for input in c.names("in.latent") {
        let tag = suffix(&input, "in.latent");
        let latent = c.get(&input)?;
        let (z, plan) = vae.prepare(&latent)?;
        for (k, w) in plan.windows.iter().enumerate() {
            let zin = z.narrow(2, w.latents.start, w.latents.len())?;
            let name_in = format!("mid.window{k}_in{tag}");
            if c.has(&name_in) {
                c.check(&name_in, &zin)?;
            }
            let name_out = format!("mid.window{k}_out{tag}");
            if c.has(&name_out) {
                c.check(&name_out, &vae.decode_window(&zin, w.first_chunk, &never)?)?;
            }
        }
        let chunks: Vec<Tensor> =
            streamed_in_order(|on| vae.decode_streaming(&latent, &never, on))?
                .into_iter()
                .map(|chunk| chunk.video)
                .collect();
        if chunks.len() != plan.windows.len() {
            return Err(Error::InvalidInput(format!(
                "{} streamed chunks for {} windows",
                chunks.len(),
                plan.windows.len()
            )));
        }
        let video = Tensor::cat(&chunks, 2)?;
        c.check_declared(&format!("out.frames_u8{tag}"), || {
            Ok(frames_u8(&video)?.squeeze(0)?)
        })?;
        c.check_declared(&format!("out.video{tag}"), || Ok(video))?;
    }
    c.finish()
}
