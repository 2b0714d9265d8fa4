//! Parity with the official implementation on every DiT fixture case (CPU).

use cadence_parity::dit::check_case;
use cadence_parity::fixtures::check_all;
use candle_core::Device;

#[test]
fn dit_forward_cases() {
    check_all(&["dit_forward"], |case| check_case(case, &Device::Cpu));
}

#[test]
fn rope_cases() {
    check_all(&["rope"], |case| check_case(case, &Device::Cpu));
}

#[test]
fn activation_cases() {
    check_all(&["activations"], |case| check_case(case, &Device::Cpu));
}
