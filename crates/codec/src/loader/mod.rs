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
//! recorder that allocates nothing), naming every missing, unexpected, mis-shaped and mis-typed
//! key (the same check as every safetensors loader: [`cadence_core::checkpoint::mismatch_report`]):
//! the reference loads non-strictly and would silently run with a wrong or partial file.

pub mod ckpt;
pub mod pickle;
pub mod safetensors;
pub mod torch_zip;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cadence_core::{Checkpoint, Error, Result, TensorSpec, WeightSource};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

pub use cadence_core::var_builder::record_specs;
pub use torch_zip::TorchArchive;

/// Where a [`StateDict`]'s tensors are stored.
#[derive(Debug)]
enum Source {
    Torch(TorchArchive),
    Safetensors(Checkpoint),
}

/// Where a model key's tensor is in the file, and what is stored there.
#[derive(Debug, Clone)]
struct Stored {
    key: String,
    shape: Vec<usize>,
    dtype: DType,
}

/// A model's tensors in a checkpoint file: model key -> stored key, shape and dtype.
#[derive(Debug)]
pub struct StateDict {
    path: PathBuf,
    source: Source,
    keys: BTreeMap<String, Stored>,
}

impl StateDict {
    /// A flat `torch.save` zip state dict (`Wan2.2_VAE.pth`): keys as stored.
    pub fn from_pth(path: impl AsRef<Path>) -> Result<Self> {
        let archive = TorchArchive::open(path.as_ref(), None)?;
        let keys = archive
            .tensors()
            .iter()
            .map(|(k, t)| (k.clone(), Stored::new(k, &t.shape, t.dtype)))
            .collect();
        Ok(Self {
            path: path.as_ref().to_path_buf(),
            source: Source::Torch(archive),
            keys,
        })
    }

    fn from_parts(path: &Path, source: Source, keys: BTreeMap<String, Stored>) -> Self {
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
            .map(|(k, s)| (k.clone(), s.shape.clone()))
            .collect()
    }

    /// Loads model key `key` in its stored dtype onto `device`.
    pub fn load(&self, key: &str, device: &Device) -> Result<Tensor> {
        let stored = self.keys.get(key).ok_or_else(|| {
            Error::checkpoint(&self.path, format!("tensor {key} is not in the checkpoint"))
        })?;
        match &self.source {
            Source::Torch(a) => a.load(&stored.key, device),
            Source::Safetensors(c) => c.load(&stored.key, stored.dtype, device),
        }
    }

    /// Fails with [`Error::KeyMismatch`] unless the file holds exactly `expected`, each
    /// tensor in a type the model reads.
    pub fn verify(&self, expected: &[TensorSpec]) -> Result<()> {
        WeightSource::verify(self, "", expected)
    }

    /// A `VarBuilder` that loads each tensor on request, converted to `dtype` on `device`.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'_> {
        cadence_core::var_builder::var_builder(self, dtype, device)
    }
}

impl Stored {
    fn new(key: &str, shape: &[usize], dtype: DType) -> Self {
        Self {
            key: key.to_string(),
            shape: shape.to_vec(),
            dtype,
        }
    }
}

/// The verification the safetensors loaders run ([`WeightSource::verify`]) applies as is.
impl WeightSource for StateDict {
    fn contains(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }
    fn shape(&self, key: &str) -> Option<Vec<usize>> {
        self.keys.get(key).map(|s| s.shape.clone())
    }
    fn dtype(&self, key: &str) -> Option<DType> {
        self.keys.get(key).map(|s| s.dtype)
    }
    fn keys(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }
    fn load(&self, key: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        Ok(StateDict::load(self, key, device)?.to_dtype(dtype)?)
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}
