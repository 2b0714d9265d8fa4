//! The schedulers, guidance rules, SR glue and sampling loops against the golden fixtures.
//!
//! Shared by the CPU tests and the GPU self-test: [`check_case`] takes a fixture case and a
//! device, moves the case's input tensors to the device, runs the real schedulers, guidance
//! rules, SR glue and sampler there (with the fixtures' stub velocity model and recorded noise),
//! and compares every `out.*`/`mid.*` tensor, back on the CPU, at the tolerance the case states;
//! a tensor no check looked at fails the case.
//!
//! Precision: the pipeline's latents are f32 throughout, as in the reference, on every device;
//! there is no precision choice and so no bf16 mode (on a GPU the check runs f32 at the f32
//! tolerances). Schedules, sigma tables and guidance scales are CPU scalars by nature.

mod common;
mod loops;
mod stub_velocity;
mod unipc;
mod zero_snr;

use crate::fixtures::Case;
use cadence_core::{Error, Result};
use candle_core::Device;

/// The fixture kinds this module checks.
pub const KINDS: &[&str] = &["unipc_schedule", "zero_snr_sigmas", "sampling_loop"];

/// Runs every check for `case` on `device`. A `sampling_loop` case is checked against the
/// reference and then under the default audio-driven policy ([`check_keep_user_audio`]).
pub fn check_case(case: &Case, device: &Device) -> Result<()> {
    match case.kind.as_str() {
        "unipc_schedule" => unipc::check_case(case, device),
        "zero_snr_sigmas" => zero_snr::check_case(case, device),
        "sampling_loop" => {
            loops::check_reference(case, device)?;
            check_keep_user_audio(case, device)
        }
        other => Err(Error::Config(format!(
            "{}: kind {other} is not a pipeline fixture",
            case.name
        ))),
    }
}

/// The audio-driven scenarios of a `sampling_loop` case under the default policy
/// ([`AudioDrivenPolicy::KeepUserAudio`](cadence_pipeline::AudioDrivenPolicy::KeepUserAudio)), where
/// Cadence deliberately differs from the reference: the user's audio latent comes out
/// bit-identical, the clip is told to use the original waveform, the draw order still matches
/// the recording, and where the reference itself never touched the audio (CFG) every latent
/// still matches the reference. Part of [`check_case`]; public so that a test can name it.
pub fn check_keep_user_audio(case: &Case, device: &Device) -> Result<()> {
    loops::check_keep_user_audio(case, device)
}
