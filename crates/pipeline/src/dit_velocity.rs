//! The real DiT behind the sampler's [`VelocityModel`] interface.

use cadence_core::Result;
use cadence_model::{DitModel, DitVariant, PackingConfig};

use crate::velocity::{Velocity, VelocityInput, VelocityModel};

/// A loaded DiT together with the token packing its variant uses (v2 coordinates for the base
/// and distilled models, v1 for the super-resolution models).
#[derive(Debug)]
pub struct DitVelocity {
    model: DitModel,
    packing: PackingConfig,
}

impl DitVelocity {
    /// Wraps `model`, packing tokens as `variant` expects.
    pub fn new(model: DitModel, variant: DitVariant) -> Self {
        Self {
            model,
            packing: variant.packing(),
        }
    }

    /// The wrapped model.
    pub fn model(&self) -> &DitModel {
        &self.model
    }

    /// How the variant packs its tokens.
    pub fn packing(&self) -> &PackingConfig {
        &self.packing
    }

    /// The same packing around `f(model)`, consuming this one.
    pub fn into_map_model(self, f: impl FnOnce(DitModel) -> Result<DitModel>) -> Result<Self> {
        Ok(Self {
            model: f(self.model)?,
            packing: self.packing,
        })
    }

    /// The same packing around `f(model)` (the model moved elsewhere, for instance).
    pub fn map_model(&self, f: impl FnOnce(&DitModel) -> Result<DitModel>) -> Result<Self> {
        Ok(Self {
            model: f(&self.model)?,
            packing: self.packing.clone(),
        })
    }
}

impl VelocityModel for DitVelocity {
    fn velocity(&self, input: &VelocityInput<'_>) -> Result<Velocity> {
        // The DiT is timestep-free: `input.step` is not needed.
        let audio_len = input.audio.dim(1)?;
        let (video, audio) = self.model.velocity(
            input.video,
            input.audio,
            audio_len,
            &input.text.features,
            input.text.len,
            &self.packing,
        )?;
        Ok(Velocity { video, audio })
    }
}
