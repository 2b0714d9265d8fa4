//! Parity with the official implementation on every codec fixture case (CPU), through the
//! checker `cadence selftest` also runs: f32 at the tolerances of each case.json, and the
//! production bf16 path of the video codecs at its looser bound.

use cadence_parity::codecs::{check_case, check_case_bf16};
use cadence_parity::fixtures::check_all;
use candle_core::Device;

#[test]
fn wan22_encode_matches_reference() {
    check_all(&["wan22_vae_encode"], |case| check_case(case, &Device::Cpu));
}

#[test]
fn wan22_decode_matches_reference() {
    check_all(&["wan22_vae_decode"], |case| check_case(case, &Device::Cpu));
}

#[test]
fn turbo_vaed_decode_matches_reference() {
    check_all(&["turbo_vaed_decode"], |case| {
        check_case(case, &Device::Cpu)
    });
}

#[test]
fn oobleck_matches_reference() {
    check_all(&["oobleck"], |case| check_case(case, &Device::Cpu));
}

#[test]
fn audio_post_matches_reference() {
    check_all(&["audio_post"], |case| check_case(case, &Device::Cpu));
}

#[test]
fn wan_bf16_stays_close_to_the_f32_reference() {
    check_all(&["wan22_vae_encode", "wan22_vae_decode"], |case| {
        check_case_bf16(case, &Device::Cpu)
    });
}

#[test]
fn turbo_bf16_stays_close_to_the_f32_reference() {
    check_all(&["turbo_vaed_decode"], |case| {
        check_case_bf16(case, &Device::Cpu)
    });
}
