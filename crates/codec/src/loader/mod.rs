//! Weight loading from the three real container formats, behind one [`StateDict`].
//!
//! | codec | file | container | key map |
//! |---|---|---|---|
//! | Wan2.2 VAE | `Wan2.2_VAE.pth` | `torch.save` zip pickle, flat dict | identity |
//! | Turbo-VAED | `checkpoint-340000.ckpt` | Lightning zip pickle | `ema_state_dict`, strip `module.` |
//! | Oobleck | `model.safetensors` | safetensors (whole Stable Audio Open) | strip `pretransform.model.` |
//!
//! A [`StateDict`] maps the model's key names to the stored tensors. Models are built through a
//! candle-nn `VarBuilder` over it ([`StateDict::var_builder`]), which checks every shape as the
//! tensor is taken. Before building, [`StateDict::verify`] compares the file key for key with the
//! list the model derives from its config ([`record_specs`] runs the model constructor against a
//! recorder that allocates nothing), naming every missing, unexpected and mis-shaped key: the
//! reference loads non-strictly and would silently run with a wrong or partial file.

pub mod ckpt;
pub mod pickle;
pub mod safetensors;
pub mod spec;
pub mod torch_zip;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cadence_core::{Checkpoint, Error, Result, TensorSpec};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

pub use spec::record_specs;
pub use torch_zip::TorchArchive;

/// Where a [`StateDict`]'s tensors are stored.
#[derive(Debug)]
enum Source {
    Torch(TorchArchive),
    Safetensors(Checkpoint),
}

/// A model's tensors in a checkpoint file: model key -> stored key and shape.
#[derive(Debug)]
pub struct StateDict {
    path: PathBuf,
    source: Source,
    keys: BTreeMap<String, (String, Vec<usize>)>,
}

impl StateDict {
    /// A flat `torch.save` zip state dict (`Wan2.2_VAE.pth`): keys as stored.
    pub fn from_pth(path: impl AsRef<Path>) -> Result<Self> {
        let archive = TorchArchive::open(path.as_ref(), None)?;
        let keys = archive
            .tensors()
            .iter()
            .map(|(k, t)| (k.clone(), (k.clone(), t.shape.clone())))
            .collect();
        Ok(Self {
            path: path.as_ref().to_path_buf(),
            source: Source::Torch(archive),
            keys,
        })
    }

    fn from_parts(
        path: &Path,
        source: Source,
        keys: BTreeMap<String, (String, Vec<usize>)>,
    ) -> Self {
        Self {
            path: path.to_path_buf(),
            source,
            keys,
        }
    }

    /// The file the tensors come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every model key with its stored shape.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.keys
            .iter()
            .map(|(k, (_, s))| (k.clone(), s.clone()))
            .collect()
    }

    /// Loads model key `key` in its stored dtype onto `device`.
    pub fn load(&self, key: &str, device: &Device) -> Result<Tensor> {
        let (stored, _) = self.keys.get(key).ok_or_else(|| {
            Error::checkpoint(&self.path, format!("tensor {key} is not in the checkpoint"))
        })?;
        match &self.source {
            Source::Torch(a) => a.load(stored, device),
            Source::Safetensors(c) => {
                let dtype = c.stored().get(stored).map(|t| t.dtype).ok_or_else(|| {
                    Error::checkpoint(&self.path, format!("tensor {stored} is not in the file"))
                })?;
                c.load(stored, dtype, device)
            }
        }
    }

    /// Fails with [`Error::KeyMismatch`] unless the file holds exactly `expected`.
    pub fn verify(&self, expected: &[TensorSpec]) -> Result<()> {
        let report = mismatch_report(&self.shapes(), expected);
        if report.is_empty() {
            Ok(())
        } else {
            Err(Error::KeyMismatch {
                path: self.path.clone(),
                report,
            })
        }
    }

    /// A `VarBuilder` that loads each tensor on request, converted to `dtype` on `device`.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'_> {
        VarBuilder::from_backend(Box::new(Backend(self)), dtype, device.clone())
    }
}

/// One line per missing, unexpected or mis-shaped key; empty when `stored` matches `expected`.
pub fn mismatch_report(stored: &BTreeMap<String, Vec<usize>>, expected: &[TensorSpec]) -> String {
    let mut report = String::new();
    let mut wanted = std::collections::BTreeSet::new();
    for spec in expected {
        match stored.get(&spec.name) {
            None if spec.optional => {}
            None => {
                let _ = writeln!(
                    report,
                    "  missing: {} (expected shape {:?})",
                    spec.name, spec.shape
                );
            }
            Some(s) if *s != spec.shape => {
                let _ = writeln!(
                    report,
                    "  wrong shape: {} is {s:?} in the file, the model expects {:?}",
                    spec.name, spec.shape
                );
            }
            Some(_) => {}
        }
        wanted.insert(spec.name.as_str());
    }
    for (key, s) in stored {
        if !wanted.contains(key.as_str()) {
            let _ = writeln!(report, "  unexpected: {key} {s:?}");
        }
    }
    report
}

struct Backend<'a>(&'a StateDict);

impl SimpleBackend for Backend<'_> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!(
                "{}: tensor {name} has shape {:?}, the model expects {:?}",
                self.0.path.display(),
                t.dims(),
                s.dims()
            );
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self
            .0
            .load(name, dev)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        t.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.keys.contains_key(name)
    }
}
