//! `zero_snr_sigmas` cases: the zero-SNR table (CPU scalars by nature) and the SR re-noise (on
//! the device).

use candle_core::Device;
use serde_json::Value;

use crate::fixtures::Case;
use cadence_core::{Error, Result};

use super::common::{compare, f32_tensor, json, json_usize, tol_at, Io};
use cadence_pipeline::scheduler::ZeroSnrTable;
use cadence_pipeline::sr::renoise_video;

/// Checks the table's scalars listed in case.json and every `out.*`/`mid.*` tensor.
pub(super) fn check_case(case: &Case, device: &Device) -> Result<()> {
    let io = Io::open(case, device)?;
    let table = ZeroSnrTable::new();
    let table_tol = tol_at(case, "out.sigmas")?;
    let step = json_usize(json(case, "/noise_value")?, "noise_value")?;
    let signal = table.signal_at(step)?;

    // Scalars stated in case.json.
    let listed = json(case, "/sigma_at_noise_value")?
        .as_f64()
        .unwrap_or(f64::NAN);
    let coefs = table.signal_coefficients();
    let first: Vec<f64> = list(case, "/first_values")?;
    let last: Vec<f64> = list(case, "/last_values")?;
    let mut got = vec![signal];
    got.extend_from_slice(&coefs[..first.len()]);
    got.extend_from_slice(&coefs[coefs.len() - last.len()..]);
    let want: Vec<f32> = std::iter::once(listed)
        .chain(first.iter().copied())
        .chain(last.iter().copied())
        .map(|v| v as f32)
        .collect();
    compare(
        "case.json sigma_at_noise_value/first_values/last_values",
        &f32_tensor(&got)?,
        &f32_tensor(&want)?,
        table_tol,
    )?;

    for name in io
        .names_with_prefix("out.")
        .into_iter()
        .chain(io.names_with_prefix("mid."))
    {
        match name.as_str() {
            "out.sigmas" => io.check(&name, &f32_tensor(coefs)?, table_tol)?,
            "mid.alphas_cumprod_f32" => {
                io.check(&name, &f32_tensor(table.alphas_cumprod())?, table_tol)?
            }
            "out.sigma_at_noise_value" => io.check(&name, &f32_tensor(&[signal])?, table_tol)?,
            "out.renoised" => {
                // Looked up only here: a case without the re-noise need not state its tolerance.
                let renoise_tol = tol_at(case, "out.renoised")?;
                let got = renoise_video(&io.input("in.latent")?, &io.input("in.noise")?, signal)?;
                io.check(&name, &got, renoise_tol)?
            }
            other => return Err(Error::Config(format!("unknown tensor {other}"))),
        }
    }
    io.all_outputs_checked()
}

fn list(case: &Case, pointer: &str) -> Result<Vec<f64>> {
    Ok(json(case, pointer)?
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default())
}
