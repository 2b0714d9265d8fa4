//! Per-tensor comparison under the codecs' tolerance rule, with coverage of every `out.*`.
//!
//! `case.json: tolerances.<name>` gives `atol`, `rtol` and, for uint8 frames,
//! `max_fraction_off_by_one` (codecs SPEC.md: an element passes when
//! `|got - want| <= atol + rtol * |want|`).

use crate::fixtures::{expect_same_shape, values, Case, CaseIo};
use cadence_core::{Error, Result};
use candle_core::{DType, Device, Tensor};

use cadence_codec::video::VideoChunk;

/// Checks tensors of one case against its `io.safetensors`, using `tolerances.<name>`, and
/// remembers which were checked so that [`Checker::finish`] can insist on every `out.*`.
pub(super) struct Checker<'a> {
    io: CaseIo<'a>,
    device: Device,
    /// Comparisons made, so that a case holding nothing this checker compares fails.
    compared: std::cell::Cell<usize>,
}

impl<'a> Checker<'a> {
    /// The case's tensors; inputs will be handed out on `device`.
    pub(super) fn new(case: &'a Case, device: &Device) -> Result<Self> {
        Ok(Self {
            io: CaseIo::open(case)?,
            device: device.clone(),
            compared: std::cell::Cell::new(0),
        })
    }

    /// The io tensor `name` on the check's device (an input of the computation).
    pub(super) fn get(&self, name: &str) -> Result<Tensor> {
        self.io.on(name, &self.device)
    }

    /// The io tensor `name` converted to `dtype` on the CPU, then moved to the check's device
    /// (int16 PCM has no cast on the GPU; decoding samples is CPU work by nature).
    pub(super) fn get_as(&self, name: &str, dtype: DType) -> Result<Tensor> {
        Ok(self
            .io
            .get(name)?
            .to_dtype(dtype)?
            .to_device(&self.device)?)
    }

    /// Whether the case holds a tensor `name`.
    pub(super) fn has(&self, name: &str) -> bool {
        self.io.has(name)
    }

    /// io tensor names starting with `prefix`, sorted.
    pub(super) fn names(&self, prefix: &str) -> Vec<String> {
        self.io.names(prefix)
    }

    /// Compares `got` (on any device) with io tensor `name` under
    /// `case.json: tolerances.<name>`.
    pub(super) fn check(&self, name: &str, got: &Tensor) -> Result<()> {
        let case = self.io.case();
        let want = self.io.get(name)?;
        let tol = case
            .get(&format!("/tolerances/{name}"))
            .ok_or_else(|| Error::Config(format!("{}: no tolerance for {name}", case.name)))?;
        let atol = tol.get("atol").and_then(|v| v.as_f64()).unwrap_or(0.0);
        let rtol = tol.get("rtol").and_then(|v| v.as_f64()).unwrap_or(0.0);
        expect_same_shape(name, got, want)?;
        let g = values(got)?;
        let w = values(want)?;
        let mut worst = 0f64;
        let mut over = 0usize;
        let mut max_abs = 0f64;
        for (a, b) in g.iter().zip(&w) {
            let d = (a - b).abs();
            if d.is_nan() {
                return Err(Error::InvalidInput(format!("{name}: NaN in output")));
            }
            max_abs = max_abs.max(d);
            let allowed = atol + rtol * b.abs();
            worst = worst.max(d / allowed.max(f64::MIN_POSITIVE));
            if d > allowed {
                over += 1;
            }
        }
        if let Some(frac) = tol.get("max_fraction_off_by_one").and_then(|v| v.as_f64()) {
            // uint8: every value within atol levels; those off at all at most `frac` of them.
            let off = g.iter().zip(&w).filter(|(a, b)| a != b).count();
            let allowed = (frac * g.len() as f64).floor() as usize;
            if over > 0 || off > allowed {
                return Err(Error::InvalidInput(format!(
                    "{name}: {off} of {} values differ (allowed {allowed}), {over} by more than {atol}",
                    g.len()
                )));
            }
        } else if over > 0 {
            return Err(Error::InvalidInput(format!(
                "{name}: {over} of {} values outside atol {atol} + rtol {rtol}·|ref| (max abs diff {max_abs:.3e}, worst ratio {worst:.2})",
                g.len()
            )));
        }
        println!(
            "  {name}: max abs diff {max_abs:.3e} ({:.1}% of tolerance)",
            worst * 100.0
        );
        self.io.mark_checked(name);
        self.compared.set(self.compared.get() + 1);
        Ok(())
    }

    /// Compares io tensor `name` with what `compute` gives, if the case holds `name` (a case
    /// may record any subset of a computation's outputs).
    pub(super) fn check_declared(
        &self,
        name: &str,
        compute: impl FnOnce() -> Result<Tensor>,
    ) -> Result<()> {
        if self.has(name) {
            self.check(name, &compute()?)?;
        }
        Ok(())
    }

    /// Fails unless every `out.*` tensor of the case was checked, and something was.
    pub(super) fn finish(self) -> Result<()> {
        if self.compared.get() == 0 {
            return Err(Error::Config(format!(
                "{}: nothing to check: the case holds no tensor this kind's checker computes",
                self.io.case().name
            )));
        }
        self.io.expect_all_checked(&["out."])
    }
}

/// The suffix of `name` after `prefix` (the case's variant tag, e.g. `_T3`).
pub(super) fn suffix<'n>(name: &'n str, prefix: &str) -> &'n str {
    name.strip_prefix(prefix).unwrap_or("")
}

/// Runs a streaming decode and returns its chunks, failing when one does not start where the
/// previous one ended (the order the pipeline's MP4 writer relies on).
pub(super) fn streamed_in_order(
    decode: impl FnOnce(&mut dyn FnMut(VideoChunk) -> Result<()>) -> Result<()>,
) -> Result<Vec<VideoChunk>> {
    let mut chunks = Vec::new();
    let mut next = 0;
    decode(&mut |chunk: VideoChunk| {
        if chunk.first_frame != next {
            return Err(Error::InvalidInput(format!(
                "streamed chunk starts at frame {}, expected {next}",
                chunk.first_frame
            )));
        }
        next += chunk.len();
        chunks.push(chunk);
        Ok(())
    })?;
    Ok(chunks)
}
