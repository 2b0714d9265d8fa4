//! The Wan2.2 latent normalisation shared by both video codecs.
//!
//! The DiT works on `z = (mu - mean[c]) / std[c]` over the 48 latent channels. The constants are
//! hard-coded in the reference (no checkpoint stores them). The reference divides by the
//! reciprocal `inv_std = 1/std` (computed once in f32) rather than multiplying by `std`; we do
//! the same so results match to the last bit.

use candle_core::{DType, Device, Result, Tensor};

/// Number of latent channels.
pub const LATENT_CHANNELS: usize = 48;

/// Per-channel latent mean (Wan2.2).
pub const MEAN: [f32; LATENT_CHANNELS] = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813,
    0.0891, 0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108,
    -0.2158, 0.2502, -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313,
    -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944,
    0.3573, -0.0548, -0.1681, -0.0667,
];

/// Per-channel latent standard deviation (Wan2.2).
pub const STD: [f32; LATENT_CHANNELS] = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
];

/// The constants as `[1, 48, 1, 1, 1]` tensors in one dtype on one device.
#[derive(Debug, Clone)]
pub struct LatentNorm {
    mean: Tensor,
    inv_std: Tensor,
}

impl LatentNorm {
    /// The constants in `dtype` (the reference's Wan wrapper casts them to the model dtype, its
    /// Turbo-VAED keeps them f32). `inv_std` is computed in f32 before the cast.
    pub fn new(dtype: DType, device: &Device) -> Result<Self> {
        let inv: Vec<f32> = STD.iter().map(|s| 1.0 / s).collect();
        let shape = (1, LATENT_CHANNELS, 1, 1, 1);
        Ok(Self {
            mean: Tensor::new(&MEAN, device)?
                .reshape(shape)?
                .to_dtype(dtype)?,
            inv_std: Tensor::from_vec(inv, shape, device)?.to_dtype(dtype)?,
        })
    }

    /// `(mu - mean) * inv_std`, computed in the constants' dtype, returned in `mu`'s dtype.
    pub fn normalize(&self, mu: &Tensor) -> Result<Tensor> {
        let x = mu.to_dtype(self.mean.dtype())?;
        x.broadcast_sub(&self.mean)?
            .broadcast_mul(&self.inv_std)?
            .to_dtype(mu.dtype())
    }

    /// `z / inv_std + mean`, computed in the constants' dtype, returned in `z`'s dtype.
    pub fn denormalize(&self, z: &Tensor) -> Result<Tensor> {
        let x = z.to_dtype(self.mean.dtype())?;
        x.broadcast_div(&self.inv_std)?
            .broadcast_add(&self.mean)?
            .to_dtype(z.dtype())
    }
}
