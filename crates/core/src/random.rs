//! Deterministic random numbers and random weights.
//!
//! Two users: the sampler's seeded noise (identical on every device for a seed) and random
//! model weights (the embedded demo model, and benchmarks at the real sizes when the real
//! weights are absent).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::checkpoint::{TensorSpec, WeightSource};
use crate::error::{Error, Result};

/// `len` standard-normal f32 values, a pure function of `(seed, stream, index)`.
///
/// Algorithm (stable; changing it changes every generated clip):
/// * key: the seed as 8 little-endian bytes followed by 24 zero bytes; ChaCha20 as implemented
///   by `rand_chacha::ChaCha20Rng` (20 rounds, 64-bit block counter, 64-bit stream id);
/// * `stream` selects the ChaCha stream, read from its start as u64 words (`next_u64`: two
///   keystream words, low word first);
/// * words are consumed in pairs `(a, b)`: `u1 = ((a >> 11) + 1) / 2^53` in (0, 1],
///   `u2 = (b >> 11) / 2^53` in [0, 1), `r = sqrt(-2 ln u1)`; elements `2k` and `2k + 1` are
///   `r cos(2 pi u2)` and `r sin(2 pi u2)` computed in f64 and rounded to f32; an odd count
///   drops the last sine.
pub fn standard_normal(seed: u64, stream: u64, len: usize) -> Vec<f32> {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = ChaCha20Rng::from_seed(key);
    rng.set_stream(stream);
    let scale = 1.0 / (1u64 << 53) as f64;
    let mut out = Vec::with_capacity(len + 1);
    while out.len() < len {
        let u1 = ((rng.next_u64() >> 11) + 1) as f64 * scale;
        let u2 = (rng.next_u64() >> 11) as f64 * scale;
        let r = (-2.0 * u1.ln()).sqrt();
        let (sin, cos) = (std::f64::consts::TAU * u2).sin_cos();
        out.push((r * cos) as f32);
        out.push((r * sin) as f32);
    }
    out.truncate(len);
    out
}

/// Standard deviation of a random weight: `1/sqrt(fan_in)` for matrices and kernels (so
/// activations keep their scale through the layers), 0.1 for vectors (norm offsets, biases).
pub fn init_std(shape: &[usize]) -> f64 {
    if shape.len() >= 2 {
        let fan_in: usize = shape.iter().skip(1).product();
        1.0 / (fan_in.max(1) as f64).sqrt()
    } else {
        0.1
    }
}

/// Random weights for a list of tensor specs, served through [`WeightSource`] like a
/// checkpoint, so models build through their normal loaders.
#[derive(Debug, Clone)]
pub struct RandomWeights {
    shapes: BTreeMap<String, Vec<usize>>,
    seed: Option<u64>,
}

impl RandomWeights {
    /// Deterministic weights: tensor `i` (in name order) is [`standard_normal`]`(seed, i, ..)`
    /// scaled by [`init_std`], generated on the host. Used by the demo model.
    pub fn seeded(specs: &[TensorSpec], prefix: &str, seed: u64) -> Self {
        Self {
            shapes: specs
                .iter()
                .map(|s| (format!("{prefix}{}", s.name), s.shape.clone()))
                .collect(),
            seed: Some(seed),
        }
    }

    /// Weights drawn by the device's own generator (fast at the real sizes: 15B values on a GPU
    /// in a second; not reproducible across runs). Used by benchmarks without real weights.
    pub fn on_device(specs: &[TensorSpec], prefix: &str) -> Self {
        Self {
            seed: None,
            ..Self::seeded(specs, prefix, 0)
        }
    }

    /// Every tensor, materialised on `device` in `dtype` (for builders that take a map).
    pub fn tensors(
        &self,
        dtype: DType,
        device: &Device,
    ) -> Result<std::collections::HashMap<String, Tensor>> {
        self.shapes
            .keys()
            .map(|k| Ok((k.clone(), self.load(k, dtype, device)?)))
            .collect()
    }
}

impl WeightSource for RandomWeights {
    fn contains(&self, key: &str) -> bool {
        self.shapes.contains_key(key)
    }

    fn shape(&self, key: &str) -> Option<Vec<usize>> {
        self.shapes.get(key).cloned()
    }

    fn keys(&self) -> Vec<String> {
        self.shapes.keys().cloned().collect()
    }

    fn load(&self, key: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let (index, shape) = self
            .shapes
            .iter()
            .enumerate()
            .find_map(|(i, (k, s))| (k == key).then_some((i, s)))
            .ok_or_else(|| Error::InvalidInput(format!("random weights have no tensor {key}")))?;
        let std = init_std(shape);
        let t = match self.seed {
            Some(seed) => {
                let n = shape.iter().product();
                let values: Vec<f32> = standard_normal(seed, index as u64, n)
                    .into_iter()
                    .map(|v| v * std as f32)
                    .collect();
                Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?.to_device(device)?
            }
            None => Tensor::randn(0f32, std as f32, shape.as_slice(), device)?,
        };
        Ok(t.to_dtype(dtype)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_weights_are_reproducible_and_scaled() {
        let specs = [TensorSpec::new("w", [64, 256]), TensorSpec::new("b", [64])];
        let a = RandomWeights::seeded(&specs, "m.", 7);
        let w = a.load("m.w", DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            w.to_vec2::<f32>().unwrap(),
            RandomWeights::seeded(&specs, "m.", 7)
                .load("m.w", DType::F32, &Device::Cpu)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        );
        let std = w
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt();
        assert!((std - 1.0 / 16.0).abs() < 0.005, "{std}");
        assert!(a.contains("m.b") && !a.contains("b"));
        assert!(a.load("nope", DType::F32, &Device::Cpu).is_err());
    }
}
