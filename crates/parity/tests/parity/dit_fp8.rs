//! FP8 GEMM weights on every `dit_forward` fixture case: per layer (teacher forced) and end to
//! end, within the bounds derived from e4m3's 3-bit mantissa (`cadence_parity::fp8_bounds`).

use cadence_core::Error;
use cadence_kernels::fp8::Scaling;
use cadence_parity::fixtures::check_all;
use cadence_parity::fp8::fp8_dit_forward;
use candle_core::Device;

fn check(scaling: Scaling) {
    check_all(&["dit_forward"], |case| {
        let report = fp8_dit_forward(case, &Device::Cpu, scaling)?;
        println!("{scaling:?} activations: {}", report.table());
        let failures = report.failures();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "FP8 outside the e4m3 bound: {failures:?}"
            )))
        }
    });
}

#[test]
fn fp8_per_token_activations_on_dit_forward_cases() {
    check(Scaling::PerRow);
}

#[test]
fn fp8_per_tensor_activations_on_dit_forward_cases() {
    check(Scaling::PerTensor);
}
