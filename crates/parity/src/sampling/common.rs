//! Shared helpers of the pipeline's parity checks: tolerances read from case.json, comparisons,
//! coverage of every checked tensor.

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::fixtures::{expect_same_shape, values, Case, CaseIo};
use cadence_core::{Error, Result};

/// A tolerance as case.json states it in prose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Tol {
    /// Identical values.
    Exact,
    /// At most this many f32 ulps apart.
    Ulps(u32),
    /// `max |d| <= abs`, times `max(1, max|ref|)` when `scaled`, per leading index when
    /// `per_step`.
    MaxAbs {
        abs: f64,
        scaled: bool,
        per_step: bool,
    },
}

impl Tol {
    /// Parses `"max_abs <= 1e-5 * max(1, max|ref|) per step"`, `"exact float32 ... allow 1 ulp"`,
    /// `"exact"`.
    pub(super) fn parse(text: &str) -> Result<Self> {
        if let Some(rest) = text.split("max_abs <=").nth(1) {
            let number = rest.split_whitespace().next().unwrap_or("");
            let abs: f64 = number
                .parse()
                .map_err(|_| Error::Config(format!("unreadable tolerance {text:?}")))?;
            return Ok(Tol::MaxAbs {
                abs,
                scaled: text.contains("max(1, max|ref|)"),
                per_step: text.contains("per step"),
            });
        }
        if text.contains("ulp") {
            let words: Vec<&str> = text.split_whitespace().collect();
            let n = words
                .windows(2)
                .find(|w| w[1].starts_with("ulp"))
                .and_then(|w| w[0].parse().ok())
                .ok_or_else(|| Error::Config(format!("unreadable ulp tolerance {text:?}")))?;
            return Ok(Tol::Ulps(n));
        }
        if text.trim_start().starts_with("exact") {
            return Ok(Tol::Exact);
        }
        Err(Error::Config(format!("unknown tolerance {text:?}")))
    }
}

/// The tolerance at `case.json: tolerance.<key>`.
pub(super) fn tol_at(case: &Case, key: &str) -> Result<Tol> {
    let text = case
        .get(&format!("/tolerance/{key}"))
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Config(format!("{}: no tolerance.{key}", case.name)))?;
    Tol::parse(text)
}

/// The tolerance whose key contains `needle` (case.json keys are prose like
/// `"cfg outputs, guidance tables"`).
pub(super) fn tol_matching(case: &Case, needle: &str) -> Result<Tol> {
    let table = case
        .get("/tolerance")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::Config(format!("{}: no tolerance table", case.name)))?;
    let mut hits = table.iter().filter(|(k, _)| k.contains(needle));
    match (hits.next(), hits.next()) {
        (Some((_, v)), None) => Tol::parse(v.as_str().unwrap_or("")),
        _ => Err(Error::Config(format!(
            "{}: expected exactly one tolerance key containing {needle:?}",
            case.name
        ))),
    }
}

/// Compares `got` with `want` under `tol`; the error names the tensor and the worst difference.
pub(super) fn compare(name: &str, got: &Tensor, want: &Tensor, tol: Tol) -> Result<()> {
    expect_same_shape(name, got, want)?;
    match tol {
        Tol::Exact => {
            let (g, w) = (values(got)?, values(want)?);
            match g.iter().zip(&w).position(|(a, b)| a != b) {
                None => Ok(()),
                Some(i) => Err(Error::InvalidInput(format!(
                    "{name}: not exact at {i}: {} vs {}",
                    g[i], w[i]
                ))),
            }
        }
        Tol::Ulps(n) => {
            let g = f32_values(got)?;
            let w = f32_values(want)?;
            for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                if ulp_distance(*a, *b) > u64::from(n) {
                    return Err(Error::InvalidInput(format!(
                        "{name}: {a} vs {b} at {i} differ by more than {n} ulp"
                    )));
                }
            }
            Ok(())
        }
        Tol::MaxAbs {
            abs,
            scaled,
            per_step,
        } => {
            let steps = if per_step { want.dim(0)? } else { 1 };
            let mut worst = (0.0f64, 0.0f64, 0.0f64);
            for s in 0..steps {
                let (g, w) = if per_step {
                    (got.get(s)?, want.get(s)?)
                } else {
                    (got.clone(), want.clone())
                };
                let d = cadence_core::compare::diff(&g, &w)?;
                let allowed = if scaled {
                    abs * d.ref_max_abs.max(1.0)
                } else {
                    abs
                };
                if d.max_abs / allowed >= worst.0 {
                    worst = (d.max_abs / allowed, d.max_abs, allowed);
                }
                if d.max_abs > allowed || d.max_abs.is_nan() {
                    let at = if per_step {
                        format!(" step {s}")
                    } else {
                        String::new()
                    };
                    return Err(Error::InvalidInput(format!(
                        "{name}{at}: {d}, allowed max_abs {allowed:e}"
                    )));
                }
            }
            println!(
                "  {name}: max_abs {:.2e} (allowed {:.2e})",
                worst.1, worst.2
            );
            Ok(())
        }
    }
}

/// Every element as f32, on the CPU.
fn f32_values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_device(&Device::Cpu)?
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?)
}

fn ulp_distance(a: f32, b: f32) -> u64 {
    let key = |x: f32| -> i64 {
        let bits = i64::from(x.to_bits() as i32);
        if bits < 0 {
            i64::from(i32::MIN) - bits
        } else {
            bits
        }
    };
    (key(a) - key(b)).unsigned_abs()
}

/// The case's tensors (on the CPU) plus the set of names a check has compared, so a check can
/// fail when a fixture holds an `out.*` / `mid.*` tensor nothing looked at; inputs are handed
/// out on the check's device.
pub(super) struct Io<'c> {
    io: CaseIo<'c>,
    device: Device,
}

impl<'c> Io<'c> {
    pub(super) fn open(case: &'c Case, device: &Device) -> Result<Self> {
        Ok(Self {
            io: CaseIo::open(case)?,
            device: device.clone(),
        })
    }

    /// The device the computation runs on.
    pub(super) fn device(&self) -> &Device {
        &self.device
    }

    /// A tensor that must exist, as stored (on the CPU).
    pub(super) fn get(&self, name: &str) -> Result<&Tensor> {
        self.io.get(name)
    }

    /// A tensor that must exist, on the check's device (an input of the computation).
    pub(super) fn input(&self, name: &str) -> Result<Tensor> {
        self.io.on(name, &self.device)
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.io.has(name)
    }

    /// Compares `got` with the reference tensor `name` and records it as checked.
    pub(super) fn check(&self, name: &str, got: &Tensor, tol: Tol) -> Result<()> {
        compare(name, got, self.get(name)?, tol)?;
        self.io.mark_checked(name);
        Ok(())
    }

    /// Tensor names (sorted) that start with `prefix`.
    pub(super) fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.io.names(prefix)
    }

    /// Fails naming every `out.*` and `mid.*` tensor that no check covered.
    pub(super) fn all_outputs_checked(&self) -> Result<()> {
        self.io.expect_all_checked(&["out.", "mid."])
    }
}

/// `case.json` value at a pointer, or an error naming it.
pub(super) fn json<'a>(case: &'a Case, pointer: &str) -> Result<&'a Value> {
    case.get(pointer)
        .ok_or_else(|| Error::Config(format!("{}: case.json has nothing at {pointer}", case.name)))
}

pub(super) fn json_f64(v: &Value, what: &str) -> Result<f64> {
    v.as_f64()
        .ok_or_else(|| Error::Config(format!("{what} is not a number")))
}

pub(super) fn json_usize(v: &Value, what: &str) -> Result<usize> {
    v.as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| Error::Config(format!("{what} is not a non-negative integer")))
}

/// An i64 tensor of `values`, on the CPU (tables computed on the CPU by nature).
pub(super) fn i64_tensor(values: &[i64]) -> Result<Tensor> {
    Ok(Tensor::from_slice(
        values,
        values.len(),
        &candle_core::Device::Cpu,
    )?)
}

/// An f32 tensor of `values`, on the CPU (tables computed on the CPU by nature).
pub(super) fn f32_tensor(values: &[f32]) -> Result<Tensor> {
    Ok(Tensor::from_slice(
        values,
        values.len(),
        &candle_core::Device::Cpu,
    )?)
}

/// The single integer of a `[1]` int64 tensor.
pub(super) fn scalar_usize(t: &Tensor) -> Result<usize> {
    let v = t.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?;
    match v.as_slice() {
        [x] if *x >= 0 => Ok(*x as usize),
        _ => Err(Error::InvalidInput(format!(
            "expected one non-negative integer, got {v:?}"
        ))),
    }
}
