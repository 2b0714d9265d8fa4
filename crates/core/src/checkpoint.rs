//! Memory-mapped safetensors checkpoints: one file, or many shards behind an index.
//!
//! The published checkpoints come in two layouts: a single `model.safetensors`, or shards listed by
//! `model.safetensors.index.json` (`{"weight_map": {key: shard file}}`). [`Checkpoint::open`]
//! accepts either, given the folder, the index file or a single `.safetensors` file.
//!
//! Why memory-mapped: a 15B bf16 model is 30 GB. Mapping the shards reads only the headers up
//! front; each tensor's bytes are paged in when [`Checkpoint::load`] converts it into a device
//! tensor. The mapped pages are file cache, not process memory, so the only resident copy of a
//! weight is the tensor the model keeps. Drop the `Checkpoint` once the model is built.
//!
//! The reference implementation loads non-strictly and silently ignores missing or unexpected
//! keys. We do not: [`Checkpoint::verify`] compares the file against the tensors the model
//! expects and names every missing, unexpected and mis-shaped key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::{read_json, Error, Result};

/// File name of a single-file checkpoint inside a folder.
pub const SINGLE_FILE: &str = "model.safetensors";
/// File name of the shard index inside a folder.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The stored types a float weight may have: the loaders convert any of them to the compute
/// dtype. An integer or boolean tensor where the model reads a float is a damaged or relabelled
/// file (its bytes would be read as numbers of another kind).
pub const FLOAT_DTYPES: &[DType] = &[DType::F16, DType::BF16, DType::F32, DType::F64];

/// A tensor the model expects to find: its name (relative to a prefix), shape and the stored
/// types it can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Key name, relative to the prefix passed to [`Checkpoint::verify`].
    pub name: String,
    /// Expected shape.
    pub shape: Vec<usize>,
    /// Whether a checkpoint may omit it (non-learned buffers the model can recompute).
    pub optional: bool,
    /// Stored types the loader accepts ([`FLOAT_DTYPES`] unless a model says otherwise).
    pub dtypes: &'static [DType],
}

impl TensorSpec {
    /// A required float tensor.
    pub fn new(name: impl Into<String>, shape: impl Into<Vec<usize>>) -> Self {
        Self {
            name: name.into(),
            shape: shape.into(),
            optional: false,
            dtypes: FLOAT_DTYPES,
        }
    }

    /// A float tensor the checkpoint may omit.
    pub fn optional(name: impl Into<String>, shape: impl Into<Vec<usize>>) -> Self {
        Self {
            optional: true,
            ..Self::new(name, shape)
        }
    }

    /// The same tensor, stored as any of `dtypes` (e.g. FP8 GEMM weights besides floats).
    pub fn stored_as(self, dtypes: &'static [DType]) -> Self {
        Self { dtypes, ..self }
    }
}

/// Header facts about one stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTensor {
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Element type as stored.
    pub dtype: DType,
}

/// An opened (memory-mapped) safetensors checkpoint.
pub struct Checkpoint {
    path: PathBuf,
    files: Vec<PathBuf>,
    mmap: MmapedSafetensors,
    stored: BTreeMap<String, StoredTensor>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("files", &self.files)
            .field("tensors", &self.stored.len())
            .finish()
    }
}

impl Checkpoint {
    /// Opens a checkpoint from a folder (holding `model.safetensors.index.json` or
    /// `model.safetensors`), an index file, or a single `.safetensors` file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let files = resolve_files(path)?;
        let mut ckpt = Self::open_files(&files)?;
        ckpt.path = path.to_path_buf();
        if let Some(index) = index_path(path) {
            ckpt.check_index(&index)?;
        }
        Ok(ckpt)
    }

    /// Opens an explicit list of safetensors files as one checkpoint.
    pub fn open_files(files: &[PathBuf]) -> Result<Self> {
        let first = files
            .first()
            .ok_or_else(|| Error::Config("a checkpoint needs at least one file".into()))?;
        for f in files {
            let mut zst = f.clone().into_os_string();
            zst.push(".zst");
            if !f.is_file() && Path::new(&zst).is_file() {
                return Err(Error::checkpoint(
                    f,
                    "only a zstd-compressed copy (.zst) is present; decompress it with `zstd -d` first",
                ));
            }
            if !f.is_file() {
                return Err(Error::checkpoint(
                    f,
                    "shard file is missing; download it again",
                ));
            }
        }
        // SAFETY: the files are mapped read-only. As with every mmap, a process truncating the
        // file while we read it would fault; checkpoints are not modified while loading.
        let mmap = unsafe { MmapedSafetensors::multi(files) }
            .map_err(|e| Error::checkpoint(first, format!("not a valid safetensors file: {e}")))?;
        let mut stored = BTreeMap::new();
        for (name, view) in mmap.tensors() {
            let dtype = DType::try_from(view.dtype()).map_err(|e| {
                Error::checkpoint(first, format!("tensor {name}: unsupported dtype: {e}"))
            })?;
            stored.insert(
                name,
                StoredTensor {
                    shape: view.shape().to_vec(),
                    dtype,
                },
            );
        }
        Ok(Self {
            path: first.clone(),
            files: files.to_vec(),
            mmap,
            stored,
        })
    }

    /// The path the checkpoint was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The safetensors files behind this checkpoint.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Every stored tensor, by key.
    pub fn stored(&self) -> &BTreeMap<String, StoredTensor> {
        &self.stored
    }

    /// Whether `key` is stored.
    pub fn contains(&self, key: &str) -> bool {
        self.stored.contains_key(key)
    }

    /// Loads `key` onto `device`, converted to `dtype` (the reference casts every tensor to the
    /// dtype its module declares, whatever the file stores).
    ///
    /// A conversion happens on the host before the upload, so a device never holds the stored
    /// and the converted copy at once; on the host the stored copy lives only for this call.
    pub fn load(&self, key: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let stored = self.stored.get(key).ok_or_else(|| {
            Error::checkpoint(&self.path, format!("tensor {key} is not in the checkpoint"))
        })?;
        let read_on = if stored.dtype == dtype {
            device
        } else {
            &Device::Cpu
        };
        let t = self
            .mmap
            .load(key, read_on)
            .map_err(|e| Error::checkpoint(&self.path, format!("tensor {key}: {e}")))?;
        if stored.dtype == dtype {
            Ok(t)
        } else {
            Ok(t.to_dtype(dtype)?.to_device(device)?)
        }
    }

    /// Compares the stored keys under `prefix` with `expected` (names relative to `prefix`).
    ///
    /// Keys outside `prefix` are ignored (a text encoder reads only `model.encoder.*` of an
    /// encoder-decoder file). Fails with [`Error::KeyMismatch`] naming every missing,
    /// unexpected, mis-shaped or mis-typed key.
    pub fn verify(&self, prefix: &str, expected: &[TensorSpec]) -> Result<()> {
        WeightSource::verify(self, prefix, expected)
    }

    /// The text of [`Checkpoint::verify`]'s error: one line per problem, empty when the
    /// checkpoint matches.
    pub fn mismatch_report(&self, prefix: &str, expected: &[TensorSpec]) -> String {
        mismatch_report(self, prefix, expected)
    }

    /// Checks that the index lists exactly the stored keys, each in the shard that holds it.
    fn check_index(&self, index: &Path) -> Result<()> {
        let map = read_index(index)?;
        let mut report = String::new();
        for (key, shard) in &map {
            if !self.stored.contains_key(key) {
                let _ = writeln!(
                    report,
                    "  {key}: listed in the index (shard {shard}) but stored in no shard"
                );
            }
        }
        for key in self.stored.keys() {
            if !map.contains_key(key) {
                let _ = writeln!(
                    report,
                    "  {key}: stored in a shard but not listed in the index"
                );
            }
        }
        if report.is_empty() {
            Ok(())
        } else {
            Err(Error::checkpoint(
                index,
                format!("index and shards disagree; re-download the checkpoint:\n{report}"),
            ))
        }
    }
}

/// The index file to check for `path`, if the checkpoint is sharded.
fn index_path(path: &Path) -> Option<PathBuf> {
    if path.is_dir() {
        let index = path.join(INDEX_FILE);
        index.is_file().then_some(index)
    } else if path.extension().is_some_and(|e| e == "json") {
        Some(path.to_path_buf())
    } else {
        None
    }
}

/// Reads the `weight_map` of a shard index.
fn read_index(index: &Path) -> Result<HashMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    Ok(read_json::<Index>(index)?.weight_map)
}

/// The safetensors files that make up the checkpoint at `path`.
fn resolve_files(path: &Path) -> Result<Vec<PathBuf>> {
    if let Some(index) = index_path(path) {
        let dir = index.parent().unwrap_or(Path::new("."));
        let shards: BTreeSet<String> = read_index(&index)?.into_values().collect();
        if shards.is_empty() {
            return Err(Error::checkpoint(&index, "the index lists no shards"));
        }
        return Ok(shards.into_iter().map(|s| dir.join(s)).collect());
    }
    if path.is_dir() {
        let single = path.join(SINGLE_FILE);
        if single.is_file() {
            return Ok(vec![single]);
        }
        return Err(Error::checkpoint(
            path,
            format!("found neither {INDEX_FILE} nor {SINGLE_FILE}; is this the right folder?"),
        ));
    }
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    Err(Error::checkpoint(path, "no such file or folder"))
}

/// Anything models can read named tensors from: a checkpoint on disk, or generated weights.
///
/// Model loaders take `&dyn WeightSource`, so the same code builds a model from a published
/// checkpoint, from the demo's seeded weights, or from random weights at the real sizes.
pub trait WeightSource: Send + Sync {
    /// Whether `key` is present.
    fn contains(&self, key: &str) -> bool;
    /// The stored shape of `key`.
    fn shape(&self, key: &str) -> Option<Vec<usize>>;
    /// The stored element type of `key`; `None` when the source has none of its own
    /// (generated weights are made in whatever type is asked for).
    fn dtype(&self, _key: &str) -> Option<DType> {
        None
    }
    /// Every key, sorted.
    fn keys(&self) -> Vec<String>;
    /// `key` on `device`, converted to `dtype`.
    fn load(&self, key: &str, dtype: DType, device: &Device) -> Result<Tensor>;
    /// Compares the keys under `prefix` with `expected` (see [`Checkpoint::verify`]).
    fn verify(&self, prefix: &str, expected: &[TensorSpec]) -> Result<()> {
        let report = mismatch_report(self, prefix, expected);
        if report.is_empty() {
            Ok(())
        } else {
            Err(Error::KeyMismatch {
                path: PathBuf::from(self.describe()),
                report,
            })
        }
    }
    /// What the source is, for error messages (a path, or "random weights").
    fn describe(&self) -> String {
        "random weights".into()
    }
}

impl WeightSource for Checkpoint {
    fn contains(&self, key: &str) -> bool {
        Checkpoint::contains(self, key)
    }
    fn shape(&self, key: &str) -> Option<Vec<usize>> {
        self.stored.get(key).map(|s| s.shape.clone())
    }
    fn dtype(&self, key: &str) -> Option<DType> {
        self.stored.get(key).map(|s| s.dtype)
    }
    fn keys(&self) -> Vec<String> {
        self.stored.keys().cloned().collect()
    }
    fn load(&self, key: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        Checkpoint::load(self, key, dtype, device)
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// One line per missing, unexpected, mis-shaped or mis-typed key under `prefix`; empty when all
/// match. The one verification every loader (and `cadence check`) runs.
pub fn mismatch_report<S: WeightSource + ?Sized>(
    source: &S,
    prefix: &str,
    expected: &[TensorSpec],
) -> String {
    let mut report = String::new();
    let mut wanted = BTreeSet::new();
    for spec in expected {
        let key = format!("{prefix}{}", spec.name);
        match source.shape(&key) {
            None if spec.optional => {}
            None => {
                let _ = writeln!(report, "  missing: {key} (expected shape {:?})", spec.shape);
            }
            Some(shape) if shape != spec.shape => {
                let _ = writeln!(
                    report,
                    "  wrong shape: {key} is {shape:?} in the file, the model expects {:?}",
                    spec.shape
                );
            }
            Some(_) => match source.dtype(&key) {
                Some(dtype) if !spec.dtypes.contains(&dtype) => {
                    let _ = writeln!(
                        report,
                        "  wrong dtype: {key} is stored as {}, the model reads {}",
                        dtype.as_str(),
                        spec.dtypes
                            .iter()
                            .map(|d| d.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                _ => {}
            },
        }
        wanted.insert(key);
    }
    for key in source.keys() {
        if key.starts_with(prefix) && !wanted.contains(&key) {
            let shape = source.shape(&key).unwrap_or_default();
            let _ = writeln!(report, "  unexpected: {key} {shape:?}");
        }
    }
    report
}
