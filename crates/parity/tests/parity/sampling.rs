//! Parity of the pipeline crate against the golden fixtures (`text_sched`): every case of kind
//! `unipc_schedule`, `zero_snr_sigmas` and `sampling_loop` under the fixture root, on the CPU,
//! through the checker `cadence selftest` also runs.

use cadence_parity::fixtures::check_all;
use cadence_parity::sampling::{check_case, check_keep_user_audio};
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

/// A zero-SNR case holding only the table (no re-noise tensors and no re-noise tolerance) is
/// checked as it is; the checker used to demand the re-noise tolerance of every case.
#[test]
fn a_zero_snr_table_alone_is_checked() {
    check_all(&["zero_snr_sigmas"], |case| {
        let dir = tempfile::tempdir().unwrap();
        let mut meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.file("case.json")).unwrap()).unwrap();
        meta["tolerance"]
            .as_object_mut()
            .unwrap()
            .remove("out.renoised");
        std::fs::write(dir.path().join("case.json"), meta.to_string()).unwrap();
        let io = candle_core::safetensors::load(case.file("io.safetensors"), &Device::Cpu)?;
        let table: std::collections::HashMap<_, _> = io
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "out.renoised" | "in.latent" | "in.noise"))
            .collect();
        candle_core::safetensors::save(&table, dir.path().join("io.safetensors"))?;
        check_case(
            &cadence_parity::fixtures::Case::open(dir.path())?,
            &Device::Cpu,
        )
    });
}
