//! The production dtype: both video codecs run in bf16 (weights and activations). The fixtures
//! are f32, so this is the looser acceptance check SPEC.md asks for: the bf16 result must stay
//! close to the f32 reference (relative L2 error) on every video case.

use cadence_codec::{StateDict, TurboConfig, TurboVaed, WanConfig, WanVae};
use cadence_core::compare::diff;
use cadence_core::fixtures::{check_all, tensor, Case};
use cadence_core::{Error, Result};
use candle_core::{DType, Device};

/// bf16 keeps 8 significant bits (rounding error up to 2^-9 ≈ 0.2 % per op); over the ~30
/// conv layers of a decoder that compounds to ~2 % (measured: 1.4e-2 to 2.3e-2 on the fixtures).
const BF16_REL_L2: f64 = 0.05;

fn expect_close(
    case: &Case,
    name: &str,
    got: &candle_core::Tensor,
    want: &candle_core::Tensor,
) -> Result<()> {
    let d = diff(got, want)?;
    println!("  {} {name} in bf16: {d}", case.name);
    if d.rel_l2 <= BF16_REL_L2 {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{name}: bf16 {d}, allowed rel_l2 {BF16_REL_L2}"
        )))
    }
}

fn wan(case: &Case) -> Result<WanVae> {
    let cfg: WanConfig =
        serde_json::from_value(case.get("/config/WanVAE_").cloned().unwrap_or_default())
            .map_err(|e| Error::Config(e.to_string()))?;
    let sd = StateDict::from_safetensors(case.file("weights.safetensors"), "")?;
    WanVae::from_state_dict(&sd, &cfg, DType::BF16, &Device::Cpu)
}

#[test]
fn wan_bf16_stays_close_to_the_f32_reference() {
    check_all(&["wan22_vae_encode", "wan22_vae_decode"], |case| {
        let vae = wan(case)?;
        let io = case.io()?;
        if case.kind == "wan22_vae_encode" {
            let latent = vae.encode_video(tensor(case, &io, "in.video")?)?;
            assert_eq!(latent.dtype(), DType::F32);
            expect_close(
                case,
                "out.latent",
                &latent,
                tensor(case, &io, "out.latent")?,
            )
        } else {
            let video = vae.decode(tensor(case, &io, "in.latent")?)?;
            expect_close(case, "out.video", &video, tensor(case, &io, "out.video")?)
        }
    });
}

#[test]
fn turbo_bf16_stays_close_to_the_f32_reference() {
    check_all(&["turbo_vaed_decode"], |case| {
        let cfg = TurboConfig::from_file(case.file("config.json"))?;
        let sd = StateDict::from_safetensors(case.file("weights.safetensors"), "")?;
        let vae = TurboVaed::from_state_dict(&sd, &cfg, DType::BF16, &Device::Cpu)?;
        let io = case.io()?;
        let mut inputs: Vec<&String> = io.keys().filter(|k| k.starts_with("in.latent")).collect();
        inputs.sort();
        for input in inputs {
            let tag = &input["in.latent".len()..];
            let video = vae.decode(&io[input])?;
            let name = format!("out.video{tag}");
            expect_close(case, &name, &video, tensor(case, &io, &name)?)?;
        }
        Ok(())
    });
}
