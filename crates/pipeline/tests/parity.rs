//! Parity of the pipeline crate against the golden fixtures (`text_sched`): every case of kind
//! `unipc_schedule`, `zero_snr_sigmas` and `sampling_loop` under the fixture root, on the CPU,
//! through the crate's parity module (the same code the GPU self-test runs).

use cadence_core::fixtures::check_all;
use cadence_pipeline::parity::{check_case, check_keep_user_audio};
use candle_core::Device;

#[test]
fn unipc_schedule_parity() {
    check_all(&["unipc_schedule"], |case| check_case(case, &Device::Cpu));
}

#[test]
fn zero_snr_parity() {
    check_all(&["zero_snr_sigmas"], |case| check_case(case, &Device::Cpu));
}

#[test]
fn sampling_loop_parity() {
    check_all(&["sampling_loop"], |case| check_case(case, &Device::Cpu));
}

#[test]
fn audio_driven_keeps_user_audio() {
    check_all(&["sampling_loop"], |case| {
        check_keep_user_audio(case, &Device::Cpu)
    });
}
