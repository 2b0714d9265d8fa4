//! The FFT resample on hand-made signals: identity at the same length, and up then down by an
//! integer factor returns the band-limited input.

use cadence_codec::audio_path::resample_fft;
use cadence_core::compare::diff;
use candle_core::{Device, Tensor};

#[test]
fn resample_identity_and_upsampling() {
    // m == n is the identity; up then down by an integer factor returns the band-limited input.
    let x = Tensor::new(
        &[[0.5f32], [-1.0], [0.25], [2.0], [0.0], [1.5]],
        &Device::Cpu,
    )
    .unwrap();
    let same = resample_fft(&x, 6).unwrap();
    let d = diff(&same, &x).unwrap().max_abs;
    assert!(d < 1e-6, "{d}");
    let up = resample_fft(&x, 12).unwrap();
    let back = resample_fft(&up, 6).unwrap();
    let d = diff(&back, &x).unwrap().max_abs;
    assert!(d < 1e-5, "{d}");
}
