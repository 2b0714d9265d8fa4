//! Parity of Turbo-VAED with the reference on every `turbo_vaed_decode` fixture case: every
//! latent `in.latent<tag>` of a case is decoded and its `out.video<tag>`, `out.frames_u8<tag>`
//! and per-window `mid.window<k>_{in,out}<tag>` are checked.

mod common;

use cadence_codec::video::frames_u8;
use cadence_codec::{StateDict, TurboConfig, TurboVaed};
use cadence_core::fixtures::{check_all, Case};
use cadence_core::Result;
use candle_core::{DType, Device, Tensor};
use common::{suffix, Checker};

fn load(case: &Case) -> Result<TurboVaed> {
    let cfg = TurboConfig::from_file(case.file("config.json"))?;
    let sd = StateDict::from_safetensors(case.file("weights.safetensors"), "")?;
    TurboVaed::from_state_dict(&sd, &cfg, DType::F32, &Device::Cpu)
}

#[test]
fn turbo_vaed_decode_matches_reference() {
    check_all(&["turbo_vaed_decode"], |case| {
        let vae = load(case)?;
        let c = Checker::new(case)?;
        for input in c.names("in.latent") {
            let tag = suffix(&input, "in.latent");
            let latent = c.get(&input)?;
            let (z, plan) = vae.prepare(&latent)?;
            for (k, w) in plan.windows.iter().enumerate() {
                let zin = z.narrow(2, w.latents.start, w.latents.len())?;
                let name_in = format!("mid.window{k}_in{tag}");
                if c.io.contains_key(&name_in) {
                    c.check(&name_in, &zin)?;
                }
                let name_out = format!("mid.window{k}_out{tag}");
                if c.io.contains_key(&name_out) {
                    c.check(&name_out, &vae.decode_window(&zin, w.first_chunk)?)?;
                }
            }
            let mut chunks = Vec::new();
            vae.decode_streaming(&latent, |chunk| {
                assert_eq!(
                    chunk.first_frame,
                    chunks
                        .iter()
                        .map(|c: &Tensor| c.dim(2).unwrap())
                        .sum::<usize>()
                );
                chunks.push(chunk.video);
                Ok(())
            })?;
            assert_eq!(chunks.len(), plan.windows.len());
            let video = Tensor::cat(&chunks, 2)?;
            c.check(&format!("out.video{tag}"), &video)?;
            c.check(
                &format!("out.frames_u8{tag}"),
                &frames_u8(&video)?.squeeze(0)?,
            )?;
        }
        c.finish()
    });
}
