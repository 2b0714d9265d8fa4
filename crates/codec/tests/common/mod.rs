//! Shared parity-test support: per-tensor tolerances from case.json and coverage of `out.*`.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use cadence_core::fixtures::{tensor, Case};
use cadence_core::{Error, Result};
use candle_core::{DType, Tensor};

/// Checks tensors of one case against its `io.safetensors`, using `tolerances.<name>`, and
/// remembers which were checked so that [`Checker::finish`] can insist on every `out.*`.
pub struct Checker<'a> {
    pub case: &'a Case,
    pub io: HashMap<String, Tensor>,
    checked: RefCell<BTreeSet<String>>,
}

impl<'a> Checker<'a> {
    pub fn new(case: &'a Case) -> Result<Self> {
        Ok(Self {
            case,
            io: case.io()?,
            checked: RefCell::new(BTreeSet::new()),
        })
    }

    /// The io tensor `name`.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        Ok(tensor(self.case, &self.io, name)?.clone())
    }

    /// io tensor names starting with `prefix`, sorted.
    pub fn names(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .io
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Compares `got` with io tensor `name` under `case.json: tolerances.<name>`.
    pub fn check(&self, name: &str, got: &Tensor) -> Result<()> {
        let want = self.get(name)?;
        let tol = self
            .case
            .get(&format!("/tolerances/{name}"))
            .ok_or_else(|| Error::Config(format!("{}: no tolerance for {name}", self.case.name)))?;
        let atol = tol.get("atol").and_then(|v| v.as_f64()).unwrap_or(0.0);
        let rtol = tol.get("rtol").and_then(|v| v.as_f64()).unwrap_or(0.0);
        if got.dims() != want.dims() {
            return Err(Error::InvalidInput(format!(
                "{name}: shape {:?}, reference {:?}",
                got.dims(),
                want.dims()
            )));
        }
        let g = got.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let w = want.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
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
        self.checked.borrow_mut().insert(name.to_string());
        Ok(())
    }

    /// Fails unless every `out.*` tensor of the case was checked.
    pub fn finish(self) -> Result<()> {
        let checked = self.checked.borrow().clone();
        let missed: Vec<String> = self
            .names("out.")
            .into_iter()
            .filter(|n| !checked.contains(n))
            .collect();
        if missed.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "outputs not checked: {missed:?}"
            )))
        }
    }
}

/// The suffix of `name` after `prefix` (the case's variant tag, e.g. `_T3`).
pub fn suffix<'n>(name: &'n str, prefix: &str) -> &'n str {
    name.strip_prefix(prefix).unwrap_or("")
}
