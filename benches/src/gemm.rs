//! The reference rate: a model-shaped matrix product, timed on the device in the run itself,
//! so "achieved TFLOP/s" is compared with what this device and this build actually reach
//! (clocks, power limits and the GEMM library vary between machines and drivers).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use cadence_core::Result;
use cadence_model::DitConfig;

/// `[m, k] × [k, n]` (the right operand stored `[n, k]` and transposed, as the model's linear
/// layers store their weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GemmShape {
    /// Rows of the left operand (tokens).
    pub m: usize,
    /// The shared dimension (input features).
    pub k: usize,
    /// Columns of the result (output features).
    pub n: usize,
}

impl GemmShape {
    /// The DiT's fused query/key/value(/gate) projection over `tokens` tokens: for the
    /// published 15B model and 4096 tokens (about one 256p forward), 4096 × 5120 × 7208.
    pub fn dit_qkv(config: &DitConfig, tokens: usize) -> Self {
        Self {
            m: tokens,
            k: config.hidden_size,
            n: config.qkv_features(),
        }
    }

    /// A product a CPU finishes in well under a second (for the demo scale).
    pub fn demo() -> Self {
        Self {
            m: 256,
            k: 512,
            n: 512,
        }
    }

    /// Operations of one product (a multiply-add is 2).
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.k as f64 * self.n as f64
    }
}

/// The measured peak.
#[derive(Debug, Clone, Serialize)]
pub struct GemmPeak {
    /// The product timed.
    pub shape: GemmShape,
    /// Its element type (`bf16`, `f32`).
    pub dtype: String,
    /// Products per timed batch.
    pub reps: usize,
    /// Seconds per product, in the fastest batch.
    pub seconds: f64,
    /// Operations per second of the fastest batch, in TFLOP/s.
    pub tflops: f64,
}

/// Batches timed; the fastest one counts (the others absorb clock ramps and interference).
const TRIALS: usize = 3;

/// Times `shape` in `dtype` on `device`: two products to warm up (library heuristics, clocks),
/// then [`TRIALS`] batches of `reps`, each closed by a device synchronisation before the clock
/// is read.
pub fn measure_gemm_peak(
    device: &Device,
    dtype: DType,
    shape: GemmShape,
    reps: usize,
) -> Result<GemmPeak> {
    let reps = reps.max(1);
    let a = Tensor::randn(0f32, 1.0, (shape.m, shape.k), device)?.to_dtype(dtype)?;
    let w = Tensor::randn(0f32, 1.0, (shape.n, shape.k), device)?.to_dtype(dtype)?;
    let wt = w.t()?;
    for _ in 0..2 {
        a.matmul(&wt)?;
    }
    device.synchronize()?;
    let mut best = f64::INFINITY;
    for _ in 0..TRIALS {
        let start = Instant::now();
        for _ in 0..reps {
            // Results are dropped at once: their memory is reused, as in a real layer.
            a.matmul(&wt)?;
        }
        device.synchronize()?;
        best = best.min(start.elapsed().as_secs_f64() / reps as f64);
    }
    Ok(GemmPeak {
        shape,
        dtype: dtype_name(dtype),
        reps,
        seconds: best,
        tflops: shape.flops() / best / 1e12,
    })
}

/// `bf16`, `f32`, ...
pub(crate) fn dtype_name(dtype: DType) -> String {
    dtype.as_str().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_shape_is_the_qkv_projection_of_the_15b_model() {
        let s = GemmShape::dit_qkv(&DitConfig::base(), 4096);
        assert_eq!((s.m, s.k, s.n), (4096, 5120, 7208));
        assert_eq!(s.flops(), 2.0 * 4096.0 * 5120.0 * 7208.0);
    }

    #[test]
    fn a_small_product_is_timed_on_the_cpu() {
        let shape = GemmShape {
            m: 32,
            k: 64,
            n: 48,
        };
        let peak = measure_gemm_peak(&Device::Cpu, DType::F32, shape, 2).unwrap();
        assert!(peak.seconds > 0.0 && peak.tflops > 0.0);
        assert_eq!(peak.dtype, "f32");
    }
}
