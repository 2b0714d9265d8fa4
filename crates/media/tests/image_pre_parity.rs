//! Parity of the reference-image pre-processing with the official pipeline on every
//! `image_pre` fixture case (CPU), through the crate's parity module (the same code the GPU
//! self-test runs).

use cadence_core::fixtures::check_all;
use cadence_media::parity::check_case;
use candle_core::Device;

#[test]
fn image_pre_matches_the_reference_pipeline() {
    check_all(&["image_pre"], |case| check_case(case, &Device::Cpu));
}
