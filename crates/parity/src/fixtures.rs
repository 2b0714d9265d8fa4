//! Discovery and loading of the golden parity fixtures.
//!
//! The fixture root is `$CADENCE_FIXTURES` when set, else `../shared/fixtures` beside the
//! repository. A case is any folder holding a `case.json`; tests find cases by scanning and
//! dispatch on the case's `kind`, never on folder or tensor names, so another fixture set with
//! the same layout can be swapped in.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use cadence_core::error::{read_json, Error, Result};

/// Environment variable that overrides the fixture root.
pub const ROOT_ENV: &str = "CADENCE_FIXTURES";

/// The fixture root: `$CADENCE_FIXTURES`, else `<repo>/../shared/fixtures`.
pub fn root() -> PathBuf {
    match std::env::var_os(ROOT_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
    }
}

/// One fixture case: a folder with `case.json` and its tensor files.
#[derive(Debug, Clone)]
pub struct Case {
    /// Folder name, printed in `checked <name> (<kind>)`.
    pub name: String,
    /// The case folder.
    pub dir: PathBuf,
    /// `case.json: kind`.
    pub kind: String,
    /// The whole `case.json`.
    pub meta: Value,
}

impl Case {
    /// Reads the case in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let meta: Value = read_json(&dir.join("case.json"))?;
        let kind = meta
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Config(format!("{}/case.json has no kind", dir.display())))?
            .to_string();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            name,
            dir: dir.to_path_buf(),
            kind,
            meta,
        })
    }

    /// `case.json: compute` (`"f32"`, `"bf16"`), if present.
    pub fn compute(&self) -> Option<&str> {
        self.meta.get("compute").and_then(Value::as_str)
    }

    /// A file of the case.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// All tensors of `io.safetensors`, on the CPU, in their stored dtypes.
    pub fn io(&self) -> Result<HashMap<String, Tensor>> {
        self.tensors("io.safetensors")
    }

    /// All tensors of a safetensors file of the case, on the CPU.
    pub fn tensors(&self, file: &str) -> Result<HashMap<String, Tensor>> {
        let path = self.file(file);
        candle_core::safetensors::load(&path, &Device::Cpu)
            .map_err(|e| Error::checkpoint(&path, e.to_string()))
    }

    /// The value at a JSON pointer into `case.json` (for example `/tolerances/recommended`).
    pub fn get(&self, pointer: &str) -> Option<&Value> {
        self.meta.pointer(pointer)
    }

    /// The f64 at a JSON pointer, or an error naming the case and pointer.
    pub fn f64_at(&self, pointer: &str) -> Result<f64> {
        self.get(pointer).and_then(Value::as_f64).ok_or_else(|| {
            Error::Config(format!(
                "{}: case.json has no number at {pointer}",
                self.name
            ))
        })
    }
}

/// Every case under the fixture root, sorted by folder path. Fails if the root is missing or
/// holds no case at all (a misconfigured root must not pass as "nothing to check").
pub fn all_cases() -> Result<Vec<Case>> {
    let root = root();
    if !root.is_dir() {
        return Err(Error::Config(format!(
            "fixture root {} does not exist; set {ROOT_ENV} to the fixtures folder",
            root.display()
        )));
    }
    let mut dirs = Vec::new();
    collect_case_dirs(&root, &mut dirs)?;
    if dirs.is_empty() {
        return Err(Error::Config(format!(
            "no case.json under {}",
            root.display()
        )));
    }
    dirs.sort();
    dirs.iter().map(|d| Case::open(d)).collect()
}

/// The cases whose `kind` is one of `kinds`.
pub fn cases_of(kinds: &[&str]) -> Result<Vec<Case>> {
    Ok(all_cases()?
        .into_iter()
        .filter(|c| kinds.contains(&c.kind.as_str()))
        .collect())
}

fn collect_case_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if dir.join("case.json").is_file() {
        out.push(dir.to_path_buf());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            collect_case_dirs(&path, out)?;
        }
    }
    Ok(())
}

/// Runs `check` on every case of `kinds`, printing `checked <case> (<kind>)` for each that
/// passes, and panics at the end naming every case that failed. A parity test is one call.
pub fn check_all(kinds: &[&str], check: impl Fn(&Case) -> Result<()>) {
    let cases = match cases_of(kinds) {
        Ok(c) => c,
        Err(e) => panic!("fixture discovery failed: {e}"),
    };
    if cases.is_empty() {
        println!("no {kinds:?} cases under {}", root().display());
    }
    let mut failures = Vec::new();
    for case in &cases {
        match check(case) {
            Ok(()) => println!("checked {} ({})", case.name, case.kind),
            Err(e) => failures.push(format!("{} ({}): {e}", case.name, case.kind)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Fails (with the tensor's name and both metrics) unless `got` is within `rel_l2` of `want`.
pub fn expect_rel_l2(name: &str, got: &Tensor, want: &Tensor, rel_l2: f64) -> Result<()> {
    let d = cadence_core::compare::diff(got, want)
        .map_err(|e| Error::InvalidInput(format!("{name}: {e}")))?;
    if d.rel_l2 <= rel_l2 {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{name}: {d}, allowed rel_l2 {rel_l2:e}"
        )))
    }
}

/// Fails unless `max |got - want| <= max_abs`.
pub fn expect_max_abs(name: &str, got: &Tensor, want: &Tensor, max_abs: f64) -> Result<()> {
    let d = cadence_core::compare::diff(got, want)
        .map_err(|e| Error::InvalidInput(format!("{name}: {e}")))?;
    if d.max_abs <= max_abs {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{name}: {d}, allowed max_abs {max_abs:e}"
        )))
    }
}

/// Fails, naming the tensor and both shapes, unless `got` has `want`'s shape.
pub fn expect_same_shape(name: &str, got: &Tensor, want: &Tensor) -> Result<()> {
    if got.dims() == want.dims() {
        return Ok(());
    }
    Err(Error::InvalidInput(format!(
        "{name}: shape {:?}, reference {:?}",
        got.dims(),
        want.dims()
    )))
}

/// Fails unless `got` and `want` have the same shape and identical values.
pub fn expect_exact(name: &str, got: &Tensor, want: &Tensor) -> Result<()> {
    expect_same_shape(name, got, want)?;
    let d = cadence_core::compare::diff(got, want)?;
    if d.max_abs == 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!("{name}: not exact: {d}")))
    }
}

/// Looks up a tensor of a case's `io.safetensors` by name, with an error naming the case.
pub fn tensor<'a>(case: &Case, io: &'a HashMap<String, Tensor>, name: &str) -> Result<&'a Tensor> {
    io.get(name)
        .ok_or_else(|| Error::InvalidInput(format!("{}: io.safetensors has no {name}", case.name)))
}

/// Every element of `t` as f64, copied to the CPU first, so checks compare results computed on
/// any device with the CPU-held references.
pub fn values(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_device(&Device::Cpu)?
        .flatten_all()?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?)
}

/// The tensors of a case's `io.safetensors` (on the CPU) and the names a check has compared, so
/// the check can fail when the case holds a tensor nothing looked at: a silently skipped part of
/// a case counts as a failure.
///
/// Recording goes through `&self`, so a check can record from inside a callback that also
/// borrows the io (a streaming decoder's chunk handler, for example).
#[derive(Debug)]
pub struct CaseIo<'c> {
    case: &'c Case,
    tensors: HashMap<String, Tensor>,
    checked: RefCell<BTreeSet<String>>,
}

impl<'c> CaseIo<'c> {
    /// Reads the case's `io.safetensors`.
    pub fn open(case: &'c Case) -> Result<Self> {
        Ok(Self {
            case,
            tensors: case.io()?,
            checked: RefCell::new(BTreeSet::new()),
        })
    }

    /// The case these tensors were read from.
    pub fn case(&self) -> &'c Case {
        self.case
    }

    /// All tensors, by name, on the CPU.
    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    /// The tensor `name` as stored (on the CPU); an error names the case when it is absent.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        tensor(self.case, &self.tensors, name)
    }

    /// The tensor `name` moved to `device`: inputs of a computation that runs there.
    pub fn on(&self, name: &str, device: &Device) -> Result<Tensor> {
        Ok(self.get(name)?.to_device(device)?)
    }

    /// Whether the case holds a tensor `name`.
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The names starting with `prefix`, sorted.
    pub fn names(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Records that the tensor `name` was compared.
    pub fn mark_checked(&self, name: &str) {
        self.checked.borrow_mut().insert(name.to_string());
    }

    /// Fails naming (sorted) every tensor whose name starts with one of `prefixes` that no
    /// comparison was recorded for.
    pub fn expect_all_checked(&self, prefixes: &[&str]) -> Result<()> {
        let checked = self.checked.borrow();
        let mut missed: Vec<&str> = self
            .tensors
            .keys()
            .filter(|k| prefixes.iter().any(|p| k.starts_with(p)) && !checked.contains(*k))
            .map(String::as_str)
            .collect();
        if missed.is_empty() {
            return Ok(());
        }
        missed.sort_unstable();
        Err(Error::InvalidInput(format!(
            "{}: tensors not checked: {}",
            self.case.name,
            missed.join(", ")
        )))
    }
}

/// Error bounds for one tensor, as a case's `tolerances` state them. Every bound present must
/// hold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tolerance {
    /// Bound on `||got - want|| / ||want||` (`rel_l2`; `rel` in some cases).
    pub rel_l2: Option<f64>,
    /// Bound on `max |got - want|` (`max_abs`).
    pub max_abs: Option<f64>,
    /// Bound on `max |got - want| / max |want|` (`max_abs_over_max_abs_want`).
    pub max_rel: Option<f64>,
}

impl Tolerance {
    /// Reads `{"rel_l2"|"rel": x, "max_abs": y, "max_abs_over_max_abs_want": z}`; other keys
    /// (notes, `why`) are ignored, but an object with no bound at all is an error.
    pub fn from_json(v: &Value) -> Result<Self> {
        let num = |k: &str| v.get(k).and_then(Value::as_f64);
        let t = Self {
            rel_l2: num("rel_l2").or_else(|| num("rel")),
            max_abs: num("max_abs"),
            max_rel: num("max_abs_over_max_abs_want"),
        };
        if t == Self::default() {
            return Err(Error::Config(format!("tolerance {v} states no bound")));
        }
        Ok(t)
    }

    /// Checks `got` against `want`; the error names the tensor, the metrics and the bound.
    pub fn check(&self, name: &str, got: &Tensor, want: &Tensor) -> Result<()> {
        let d = cadence_core::compare::diff(got, want)
            .map_err(|e| Error::InvalidInput(format!("{name}: {e}")))?;
        let fails = [
            (self.rel_l2, d.rel_l2, "rel_l2"),
            (self.max_abs, d.max_abs, "max_abs"),
            (self.max_rel, d.max_rel(), "max_abs/max|want|"),
        ]
        .into_iter()
        .filter_map(|(bound, value, what)| {
            bound
                .filter(|b| !matches!(value.partial_cmp(b), Some(Ordering::Less | Ordering::Equal)))
                .map(|b| format!("{what} {value:.3e} > {b:e}"))
        })
        .collect::<Vec<_>>();
        if fails.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "{name}: {} ({d})",
                fails.join(", ")
            )))
        }
    }
}
