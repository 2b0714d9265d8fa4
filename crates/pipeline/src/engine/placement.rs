//! Carrying out the memory plan: each movable model (the text encoder, the DiTs) sits in a
//! [`Slot`] that keeps it where its [`Placement`] says, brings a visiting model to the device
//! for its stage and lets it go afterwards, and reports the bytes it holds on the device. The
//! [`Ledger`] collects those reports stage by stage, so a test (or a user with `--json`) can
//! check that what ran is what the plan said.

use std::sync::{Mutex, MutexGuard};

use candle_core::Device;

use cadence_core::{Error, Result};
use cadence_text::PromptEncoder;

use crate::dit_velocity::DitVelocity;
use crate::memory::{MemoryStage, Placement};

/// A model that can live on the device, in host memory, or streamed between them.
pub(super) trait Placeable: Sized {
    /// The same model with every weight on `device`.
    fn to_device(&self, device: &Device) -> Result<Self>;
    /// The same model computing on `device`, its layers parked in host memory and streamed;
    /// each layer leaves its old place once parked.
    fn into_streamed(self, device: &Device) -> Result<Self>;
    /// Bytes it holds on its device while idle.
    fn device_bytes(&self) -> u64;
    /// The most bytes of streamed layers it held on the device at once since the last call.
    fn take_streamed_peak(&self) -> u64;
}

impl Placeable for DitVelocity {
    fn to_device(&self, device: &Device) -> Result<Self> {
        self.map_model(|m| m.to_device(device))
    }

    fn into_streamed(self, device: &Device) -> Result<Self> {
        self.into_map_model(|m| m.into_streamed(device))
    }

    fn device_bytes(&self) -> u64 {
        self.model().device_bytes()
    }

    fn take_streamed_peak(&self) -> u64 {
        self.model().take_streamed_peak()
    }
}

impl Placeable for PromptEncoder {
    fn to_device(&self, device: &Device) -> Result<Self> {
        self.map_encoder(|e| e.to_device(device))
    }

    fn into_streamed(self, device: &Device) -> Result<Self> {
        self.into_map_encoder(|e| e.into_streamed(device))
    }

    fn device_bytes(&self) -> u64 {
        self.encoder().device_bytes()
    }

    fn take_streamed_peak(&self) -> u64 {
        self.encoder().take_streamed_peak()
    }
}

/// One movable model and where it is.
pub(super) struct Slot<M> {
    /// How the model is kept between uses: on the device (resident), parked in host memory
    /// with its small parts on the device (visiting, streamed), or on the host (host).
    home: M,
    placement: Placement,
    device: Device,
    /// A visiting model's device copy, while it is on the device.
    visit: Option<M>,
}

impl<M: Placeable> Slot<M> {
    /// Puts `model` (loaded anywhere) where `placement` keeps it for `device`.
    pub(super) fn new(model: M, placement: Placement, device: &Device) -> Result<Self> {
        let home = match placement {
            Placement::Resident => model.to_device(device)?,
            Placement::Visiting | Placement::Streamed => model.into_streamed(device)?,
            Placement::Host => model.to_device(&Device::Cpu)?,
        };
        Ok(Self {
            home,
            placement,
            device: device.clone(),
            visit: None,
        })
    }

    /// Brings a visiting model to the device (a no-op for the other placements).
    pub(super) fn enter(&mut self) -> Result<()> {
        if self.placement == Placement::Visiting && self.visit.is_none() {
            self.visit = Some(self.home.to_device(&self.device)?);
        }
        Ok(())
    }

    /// Frees a visiting model's device copy.
    pub(super) fn leave(&mut self) {
        self.visit = None;
    }

    /// The model to compute with now.
    pub(super) fn model(&self) -> &M {
        self.visit.as_ref().unwrap_or(&self.home)
    }

    /// Bytes of this model on the device now, plus the most its stream held since the last
    /// call (a model computing on the host holds none).
    pub(super) fn device_bytes(&self) -> u64 {
        let streamed = self.home.take_streamed_peak();
        match self.placement {
            Placement::Host => 0,
            _ => self.model().device_bytes() + streamed,
        }
    }
}

/// Locks a slot; a poisoned lock (a panic while generating) still holds a usable model.
pub(super) fn lock<M>(slot: &Mutex<Slot<M>>) -> MutexGuard<'_, Slot<M>> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// What was on the device in one stage: the weight parts, named as the plan names them
/// ([`crate::memory::part`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageResidency {
    /// The stage this residency is for.
    pub stage: MemoryStage,
    /// `(part, bytes)`: each model's bytes on the device during the stage (for a streamed
    /// model: its resident parts plus the most layers it held at once).
    pub weights: Vec<(&'static str, u64)>,
}

impl StageResidency {
    /// The bytes of part `name` (0 when absent).
    pub fn part(&self, name: &str) -> u64 {
        self.weights
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, b)| b)
            .sum()
    }
}

/// The residency of every stage of one generation, in order.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    pub(super) stages: Vec<StageResidency>,
}

impl Ledger {
    /// Records `stage` from `(part, bytes)` readings (zero-byte parts left out, as the plan
    /// leaves them out).
    pub(super) fn record(&mut self, stage: MemoryStage, readings: Vec<(&'static str, u64)>) {
        let weights = readings.into_iter().filter(|(_, b)| *b > 0).collect();
        self.stages.push(StageResidency { stage, weights });
    }
}

/// An internal error for a slot the engine was built without.
pub(super) fn missing(what: &str) -> Error {
    Error::Internal(format!("the engine has no {what}"))
}
