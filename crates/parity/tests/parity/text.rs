//! Parity with the official implementation on every text fixture case (CPU), through the
//! checker `cadence selftest` also runs.

use cadence_parity::fixtures::check_all;
use cadence_parity::text::check_case;
use candle_core::Device;

#[test]
fn t5gemma_encoder_matches_the_reference() {
    check_all(&["t5gemma_encoder"], |case| check_case(case, &Device::Cpu));
}

#[test]
fn tokenizer_matches_the_reference() {
    check_all(&["tokenizer"], |case| check_case(case, &Device::Cpu));
}

#[test]
fn derived_tensor_list_matches_the_real_manifest() {
    check_all(&["t5gemma_real_config"], |case| {
        check_case(case, &Device::Cpu)
    });
}
