//! PyTorch zip checkpoints (`torch.save` since 1.6): `Wan2.2_VAE.pth`, Lightning `.ckpt`.
//!
//! The archive holds `<name>/data.pkl` (the pickled object graph, read by the restricted
//! [`pickle`](super::pickle) parser) and one uncompressed entry `<name>/data/<key>` per storage.
//! The file is memory-mapped; each tensor is copied out of its storage's bytes when loaded, so
//! only the tensors the model keeps become resident.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::ops::Range;
use std::path::{Path, PathBuf};

use cadence_core::{Error, Result};
use candle_core::{Device, Tensor};
use memmap2::Mmap;
use zip::CompressionMethod;

use super::pickle::{self, Node, TensorRef};

/// Largest `data.pkl` accepted (real state dicts need a few hundred KiB).
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// An opened `torch.save` zip archive whose (possibly nested) state dict has been indexed.
pub struct TorchArchive {
    path: PathBuf,
    mmap: Mmap,
    /// Byte range of every storage entry, by storage key.
    storages: HashMap<String, Range<usize>>,
    /// Every tensor of the state dict, by its key in the file.
    tensors: BTreeMap<String, TensorRef>,
}

impl std::fmt::Debug for TorchArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchArchive")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl TorchArchive {
    /// Opens `path` and indexes the state dict at the top level, or under the top-level key
    /// `entry` (Lightning's `ema_state_dict`, say). Entries that are not tensors (a step counter)
    /// are skipped.
    pub fn open(path: impl AsRef<Path>, entry: Option<&str>) -> Result<Self> {
        let path = path.as_ref();
        let bad = |msg: String| Error::checkpoint(path, msg);
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: mapped read-only; a checkpoint is not modified while it is being loaded.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let mut zip = zip::ZipArchive::new(Cursor::new(&mmap[..])).map_err(|e| {
            bad(format!(
                "not a PyTorch zip checkpoint ({e}); legacy (pre-1.6) torch.save files are not \
                 supported: re-save it with a current PyTorch"
            ))
        })?;

        let names: Vec<String> = zip
            .file_names()
            .map(|n| n.map(|n| n.into_owned()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(format!("unreadable zip directory: {e}")))?;
        let pkl: Vec<&String> = names.iter().filter(|n| is_data_pkl(n)).collect();
        let [pkl] = pkl[..] else {
            return Err(bad(format!(
                "expected exactly one data.pkl in the archive, found {}",
                pkl.len()
            )));
        };
        let root = &pkl[..pkl.len() - "data.pkl".len()];
        if let Some(order) = names.iter().find(|n| **n == format!("{root}byteorder")) {
            let mut f = zip.by_name(order).map_err(|e| bad(e.to_string()))?;
            let mut s = String::new();
            std::io::Read::read_to_string(&mut f, &mut s).map_err(|e| Error::io(path, e))?;
            if s.trim() != "little" {
                return Err(bad(format!("byte order {s:?} is not supported")));
            }
        }

        let pickle_bytes = {
            let mut f = zip.by_name(pkl).map_err(|e| bad(e.to_string()))?;
            if f.size() > MAX_PICKLE_BYTES {
                return Err(bad(format!(
                    "data.pkl of {} bytes is implausibly large",
                    f.size()
                )));
            }
            // The declared size is the file's word, not a fact: reserve no more than the
            // archive holds (entries are stored, never compressed).
            let mut buf = Vec::with_capacity(f.size().min(mmap.len() as u64) as usize);
            std::io::Read::read_to_end(
                &mut std::io::Read::take(&mut f, MAX_PICKLE_BYTES),
                &mut buf,
            )
            .map_err(|e| bad(format!("data.pkl is unreadable: {e}")))?;
            buf
        };
        let parsed = pickle::parse(&pickle_bytes).map_err(|e| bad(format!("data.pkl: {e}")))?;
        let dict = match entry {
            None => parsed.root(),
            Some(key) => parsed.root().get(key).ok_or_else(|| {
                bad(format!(
                    "the checkpoint has no top-level entry {key:?} (is this the right file?)"
                ))
            })?,
        };
        let tensors = collect_tensors(dict).map_err(bad)?;

        let mut storages = HashMap::new();
        let prefix = format!("{root}data/");
        for name in names.iter().filter(|n| n.starts_with(&prefix)) {
            let key = &name[prefix.len()..];
            let f = zip.by_name(name).map_err(|e| bad(e.to_string()))?;
            if f.compression() != CompressionMethod::Stored {
                return Err(bad(format!(
                    "storage {name} is compressed; torch.save never does"
                )));
            }
            let range = f
                .data_start()
                .and_then(|s| usize::try_from(s).ok())
                .and_then(|s| Some(s..s.checked_add(usize::try_from(f.size()).ok()?)?))
                .filter(|r| r.end <= mmap.len())
                .ok_or_else(|| bad(format!("storage {name} lies outside the file")))?;
            storages.insert(key.to_string(), range);
        }
        for (name, t) in &tensors {
            let range = storages.get(&t.storage).ok_or_else(|| {
                bad(format!(
                    "tensor {name}: storage data/{} is missing",
                    t.storage
                ))
            })?;
            let need = t
                .storage_len
                .checked_mul(t.dtype.size_in_bytes())
                .ok_or_else(|| bad(format!("tensor {name}: storage size overflows")))?;
            if range.len() < need {
                return Err(bad(format!(
                    "tensor {name}: storage data/{} has {} bytes, needs {need} (truncated file?)",
                    t.storage,
                    range.len()
                )));
            }
        }
        drop(zip);
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            storages,
            tensors,
        })
    }

    /// The file this archive was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor's key (as stored) and view description.
    pub fn tensors(&self) -> &BTreeMap<String, TensorRef> {
        &self.tensors
    }

    /// Loads tensor `key` onto `device` in its stored dtype.
    pub fn load(&self, key: &str, device: &Device) -> Result<Tensor> {
        let t = self.tensors.get(key).ok_or_else(|| {
            Error::checkpoint(&self.path, format!("tensor {key} is not in the checkpoint"))
        })?;
        let range = self.storages.get(&t.storage).cloned().ok_or_else(|| {
            Error::checkpoint(
                &self.path,
                format!("tensor {key}: storage {} is missing", t.storage),
            )
        })?;
        let bytes = gather(&self.mmap[range], t);
        let cpu = Tensor::from_raw_buffer(&bytes, t.dtype, &t.shape, &Device::Cpu)?;
        Ok(cpu.to_device(device)?)
    }
}

fn is_data_pkl(name: &str) -> bool {
    name == "data.pkl" || name.ends_with("/data.pkl") && name.matches('/').count() == 1
}

/// The `str -> tensor` entries of a state dict; non-tensor values are skipped.
fn collect_tensors(dict: Node<'_>) -> std::result::Result<BTreeMap<String, TensorRef>, String> {
    let items = dict
        .dict_items()
        .ok_or_else(|| format!("the state dict is a {}, not a dict", dict.kind()))?;
    let mut out = BTreeMap::new();
    for (k, v) in items {
        let (Some(k), Some(t)) = (k.as_str(), v.as_tensor()) else {
            continue;
        };
        if out.insert(k.to_string(), t.clone()).is_some() {
            return Err(format!("key {k} appears twice in the state dict"));
        }
    }
    Ok(out)
}

/// The bytes of the view `t` of `storage`, in row-major order (views were bounds-checked).
fn gather(storage: &[u8], t: &TensorRef) -> Vec<u8> {
    let es = t.dtype.size_in_bytes();
    let numel: usize = t.shape.iter().product();
    if numel == 0 {
        return Vec::new();
    }
    let contiguous = {
        let mut expect = 1;
        let mut ok = true;
        for (&n, &s) in t.shape.iter().zip(&t.stride).rev() {
            if n > 1 && s != expect {
                ok = false;
            }
            expect *= n;
        }
        ok
    };
    if contiguous {
        return storage[t.offset * es..(t.offset + numel) * es].to_vec();
    }
    let mut out = Vec::with_capacity(numel * es);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let e = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out.extend_from_slice(&storage[e * es..(e + 1) * es]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn gathers_strided_views() {
        // storage 0..6 as f32, view = transpose of a 2x3 matrix.
        let storage: Vec<u8> = (0..6u32).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let t = TensorRef {
            storage: "0".into(),
            dtype: DType::F32,
            storage_len: 6,
            offset: 0,
            shape: vec![3, 2],
            stride: vec![1, 3],
        };
        let bytes = gather(&storage, &t);
        let v: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(v, [0., 3., 1., 4., 2., 5.]);
    }
}
