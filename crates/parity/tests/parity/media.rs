//! Parity of the reference-image pre-processing with the official pipeline on every
//! `image_pre` fixture case (CPU), through the checker `cadence selftest` also runs.

use cadence_parity::fixtures::check_all;
use cadence_parity::media::check_case;
use candle_core::Device;

#[test]
fn image_pre_matches_the_reference_pipeline() {
    check_all(&["image_pre"], |case| check_case(case, &Device::Cpu));
}
