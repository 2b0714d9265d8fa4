//! The fixtures' analytic stand-in for the DiT, behind the real [`VelocityModel`] trait.
//!
//! `c = mean(text[0, :len, :])`, `mv = mean(video)`, `ma = mean(audio)` (over every element);
//! `v_video = A_V * video + B_V * c + C_V * ma`, `v_audio = A_A * audio + B_A * c + C_A * mv`,
//! in f32 with the reference's association `(A x + B c) + C m`.

use std::cell::Cell;

use candle_core::{DType, Tensor};
use serde_json::Value;

use cadence_core::{Error, Result};

use cadence_pipeline::{Velocity, VelocityInput, VelocityModel};

/// Coefficients of one stage's stub (`stub_velocity_model.coefficients.<stage>`).
pub(super) struct StubVelocityModel {
    video: [f32; 3],
    audio: [f32; 3],
    /// Forward passes made (the sampler must batch nothing away or add extra calls).
    pub(super) calls: Cell<usize>,
}

impl StubVelocityModel {
    pub(super) fn from_json(coefficients: &Value) -> Result<Self> {
        let get = |k: &str| -> Result<f32> {
            coefficients
                .get(k)
                .and_then(Value::as_f64)
                .map(|v| v as f32)
                .ok_or_else(|| Error::Config(format!("stub coefficient {k} missing")))
        };
        Ok(Self {
            video: [get("A_V")?, get("B_V")?, get("C_V")?],
            audio: [get("A_A")?, get("B_A")?, get("C_A")?],
            calls: Cell::new(0),
        })
    }
}

fn mean(t: &Tensor) -> Result<f32> {
    Ok(t.to_dtype(DType::F64)?.mean_all()?.to_scalar::<f64>()? as f32)
}

fn affine3(x: &Tensor, [a, b, c]: [f32; 3], text_mean: f32, other_mean: f32) -> Result<Tensor> {
    Ok(x.affine(f64::from(a), f64::from(b * text_mean))?
        .affine(1.0, f64::from(c * other_mean))?)
}

impl VelocityModel for StubVelocityModel {
    fn velocity(&self, input: &VelocityInput<'_>) -> Result<Velocity> {
        self.calls.set(self.calls.get() + 1);
        let text = input.text.features.get(0)?.narrow(0, 0, input.text.len)?;
        let c = mean(&text)?;
        let mv = mean(input.video)?;
        let ma = mean(input.audio)?;
        Ok(Velocity {
            video: affine3(input.video, self.video, c, ma)?,
            audio: affine3(input.audio, self.audio, c, mv)?,
        })
    }
}
