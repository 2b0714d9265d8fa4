//! On-disk cache of the negative prompt's context, so the 9B encoder does not run for it on
//! every start.
//!
//! The key is a SHA-256 over everything the context depends on: the identity of the encoder's
//! weights ([`WeightsIdentity`]), the compute dtype, the attention variant, the context length
//! and the token ids (which pin the text and the tokenizer). A hit needs no encoder at all:
//! [`WeightsIdentity::of_checkpoint`] reads only file metadata and safetensors headers, so a
//! pipeline can build the key, try the cache, and load the encoder only on a miss.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use cadence_core::{Checkpoint, Error, Result};

use crate::attention::AttentionMode;
use crate::prompt::{EncodedPrompt, CONTEXT_DTYPE};

/// Bump when the cached file's layout or the encoder's numerics change.
const CACHE_FORMAT: &str = "cadence-text negative-prompt cache v1";

/// Largest safetensors header accepted when fingerprinting (real headers are < 1 MB).
const MAX_HEADER_BYTES: u64 = 64 << 20;

/// A fingerprint of a checkpoint's files, cheap to compute (no tensor data is read).
///
/// Per file: its name, and either the SHA-256 that names it in a Hugging Face cache (files
/// there are links to `blobs/<sha256>`) or its size and modification time; plus its safetensors
/// header (every key, dtype, shape and offset). Rewriting or replacing a shard changes the
/// fingerprint; merely copying the folder may too (new mtimes), which only costs one re-encode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WeightsIdentity(String);

impl WeightsIdentity {
    /// Fingerprints the files of `ckpt`.
    pub fn of_checkpoint(ckpt: &Checkpoint) -> Result<Self> {
        Self::of_files(ckpt.files())
    }

    /// Fingerprints a list of safetensors files.
    pub fn of_files(files: &[PathBuf]) -> Result<Self> {
        let mut files = files.to_vec();
        files.sort();
        let mut h = Sha256::new();
        for file in &files {
            h.update(file_fingerprint(file)?);
        }
        Ok(Self(hex(&h.finalize())))
    }

    /// An identity for weights that have no files (generated weights): `name` must change
    /// whenever the weights do.
    pub fn named(name: &str) -> Self {
        Self(hex(&Sha256::digest(name.as_bytes())))
    }

    /// The fingerprint as hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn file_fingerprint(file: &Path) -> Result<Vec<u8>> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut out = format!("file {}\n", name.unwrap_or_default()).into_bytes();
    let resolved = std::fs::canonicalize(file).map_err(|e| Error::io(file, e))?;
    let blob = resolved
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()));
    match blob {
        Some(sha) => out.extend(format!("sha256 {sha}\n").bytes()),
        None => {
            let meta = std::fs::metadata(&resolved).map_err(|e| Error::io(file, e))?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            out.extend(format!("size {} mtime {mtime}\n", meta.len()).bytes());
        }
    }
    out.extend(safetensors_header(&resolved)?);
    Ok(out)
}

/// The JSON header of a safetensors file (length prefix included).
fn safetensors_header(file: &Path) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| Error::io(file, e))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES {
        return Err(Error::checkpoint(
            file,
            format!("safetensors header of {n} bytes; the file is damaged"),
        ));
    }
    let mut header = len.to_vec();
    f.take(n)
        .read_to_end(&mut header)
        .map_err(|e| Error::io(file, e))?;
    Ok(header)
}

/// Everything an encoded prompt depends on besides the weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key of `ids` encoded by the weights `identity` in `dtype` with attention `mode`,
    /// padded or trimmed to `rows`.
    pub fn new(
        identity: &WeightsIdentity,
        dtype: DType,
        mode: AttentionMode,
        rows: usize,
        ids: &[u32],
    ) -> Self {
        let mut h = Sha256::new();
        h.update(CACHE_FORMAT);
        h.update(format!("\nweights {}\n", identity.as_str()));
        h.update(format!(
            "dtype {dtype:?} attention {mode:?} rows {rows}\nids"
        ));
        for id in ids {
            h.update(id.to_le_bytes());
        }
        Self(hex(&h.finalize()))
    }

    /// The key as hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A folder of cached negative-prompt contexts, one safetensors file per key.
#[derive(Debug, Clone)]
pub struct NegativePromptCache {
    dir: PathBuf,
}

impl NegativePromptCache {
    /// A cache in `dir` (created on the first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$CADENCE_CACHE_DIR/text`, else `$XDG_CACHE_HOME/cadence/text`, else
    /// `$HOME/.cache/cadence/text`; `None` when none of them is set.
    pub fn default_dir() -> Option<PathBuf> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("CADENCE_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("cadence")))
            .or_else(|| env("HOME").map(|d| d.join(".cache").join("cadence")))
            .map(|d| d.join("text"))
    }

    /// The folder of the cache.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `key`.
    pub fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir
            .join(format!("negative-{}.safetensors", key.as_str()))
    }

    /// The cached prompt for `key` on `device`, if any. An unreadable entry is reported as a
    /// warning and treated as a miss (it is overwritten by the next store).
    pub fn load(&self, key: &CacheKey, device: &Device) -> Option<EncodedPrompt> {
        let path = self.path(key);
        if !path.is_file() {
            return None;
        }
        match read_entry(&path, device) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("ignoring damaged cache entry {}: {e}", path.display());
                None
            }
        }
    }

    /// Stores `prompt` under `key` (atomically: a reader never sees half a file).
    pub fn store(&self, key: &CacheKey, prompt: &EncodedPrompt) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let path = self.path(key);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let lens = Tensor::new(
            &[prompt.original_len as i64, prompt.token_count as i64],
            &Device::Cpu,
        )?;
        let tensors = HashMap::from([
            (
                "context".to_string(),
                prompt.context.to_device(&Device::Cpu)?,
            ),
            ("lengths".to_string(), lens),
        ]);
        candle_core::safetensors::save(&tensors, &tmp)
            .map_err(|e| Error::checkpoint(&tmp, format!("cannot write cache entry: {e}")))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// The cached prompt for `key`, or `encode()`'s result, which is then stored. A failure to
    /// store is only a warning: the prompt is still returned.
    pub fn get_or_encode(
        &self,
        key: &CacheKey,
        device: &Device,
        encode: impl FnOnce() -> Result<EncodedPrompt>,
    ) -> Result<EncodedPrompt> {
        if let Some(hit) = self.load(key, device) {
            tracing::debug!(
                "negative prompt context read from {}",
                self.path(key).display()
            );
            return Ok(hit);
        }
        let prompt = encode()?;
        if let Err(e) = self.store(key, &prompt) {
            tracing::warn!("could not cache the negative prompt context: {e}");
        }
        prompt.to_device(device)
    }
}

fn read_entry(path: &Path, device: &Device) -> Result<EncodedPrompt> {
    let mut t = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| Error::checkpoint(path, e.to_string()))?;
    let (Some(context), Some(lens)) = (t.remove("context"), t.remove("lengths")) else {
        return Err(Error::checkpoint(path, "not a cache entry"));
    };
    let lens = lens.to_vec1::<i64>()?;
    let (&[original_len, token_count], 2) = (lens.as_slice(), context.rank()) else {
        return Err(Error::checkpoint(path, "not a cache entry"));
    };
    if context.dtype() != CONTEXT_DTYPE || original_len < 0 || token_count < original_len {
        return Err(Error::checkpoint(path, "not a cache entry"));
    }
    Ok(EncodedPrompt {
        context: context.to_device(device)?,
        original_len: original_len as usize,
        token_count: token_count as usize,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(v: f32) -> EncodedPrompt {
        let h = Tensor::full(v, (1, 3, 4), &Device::Cpu).unwrap();
        EncodedPrompt::from_hidden(&h, 5).unwrap()
    }

    fn write_shard(path: &Path, v: f32) {
        let t = HashMap::from([("w".to_string(), Tensor::full(v, 4, &Device::Cpu).unwrap())]);
        candle_core::safetensors::save(&t, path).unwrap();
    }

    #[test]
    fn second_call_is_a_hit_and_returns_the_same_bits() {
        let dir = tempfile::tempdir().unwrap();
        let cache = NegativePromptCache::new(dir.path().join("c"));
        let key = CacheKey::new(
            &WeightsIdentity("w".into()),
            DType::BF16,
            AttentionMode::Official,
            5,
            &[1, 2, 3],
        );
        let calls = std::cell::Cell::new(0);
        let encode = || {
            calls.set(calls.get() + 1);
            Ok(prompt(1.5))
        };
        let a = cache.get_or_encode(&key, &Device::Cpu, encode).unwrap();
        let b = cache.get_or_encode(&key, &Device::Cpu, encode).unwrap();
        assert_eq!(calls.get(), 1);
        assert_eq!(
            (b.original_len, b.token_count),
            (a.original_len, a.token_count)
        );
        let bits = |p: &EncodedPrompt| p.context.flatten_all().unwrap().to_vec1::<half::f16>();
        assert_eq!(bits(&a).unwrap(), bits(&b).unwrap());
    }

    #[test]
    fn every_input_of_the_key_changes_it() {
        let id = WeightsIdentity("w".into());
        let base = CacheKey::new(&id, DType::BF16, AttentionMode::Official, 640, &[1, 2]);
        let others = [
            CacheKey::new(
                &WeightsIdentity("v".into()),
                DType::BF16,
                AttentionMode::Official,
                640,
                &[1, 2],
            ),
            CacheKey::new(&id, DType::F32, AttentionMode::Official, 640, &[1, 2]),
            CacheKey::new(&id, DType::BF16, AttentionMode::EagerSoftcap, 640, &[1, 2]),
            CacheKey::new(&id, DType::BF16, AttentionMode::Official, 16, &[1, 2]),
            CacheKey::new(&id, DType::BF16, AttentionMode::Official, 640, &[1, 3]),
        ];
        for k in others {
            assert_ne!(k, base);
        }
    }

    #[test]
    fn rewriting_a_shard_changes_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("model.safetensors");
        write_shard(&shard, 1.0);
        let a = WeightsIdentity::of_files(std::slice::from_ref(&shard)).unwrap();
        assert_eq!(
            a,
            WeightsIdentity::of_files(std::slice::from_ref(&shard)).unwrap()
        );
        write_shard(&shard, 2.0);
        // Same size and header; the modification time tells them apart (set it explicitly so
        // the test does not depend on the file system's timestamp resolution).
        let f = std::fs::File::options().write(true).open(&shard).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(7))
            .unwrap();
        assert_ne!(a, WeightsIdentity::of_files(&[shard]).unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn hugging_face_blob_names_identify_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("ab".repeat(32));
        write_shard(&blob, 1.0);
        let link = dir.path().join("model.safetensors");
        std::os::unix::fs::symlink(&blob, &link).unwrap();
        let a = WeightsIdentity::of_files(std::slice::from_ref(&link)).unwrap();
        // Touching the blob does not change a content-addressed identity.
        let f = std::fs::File::options().write(true).open(&blob).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(7))
            .unwrap();
        assert_eq!(a, WeightsIdentity::of_files(&[link]).unwrap());
    }

    #[test]
    fn damaged_entries_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = NegativePromptCache::new(dir.path());
        let key = CacheKey::new(
            &WeightsIdentity("w".into()),
            DType::F32,
            AttentionMode::Official,
            5,
            &[1],
        );
        std::fs::write(cache.path(&key), b"garbage").unwrap();
        assert!(cache.load(&key, &Device::Cpu).is_none());
        let p = cache
            .get_or_encode(&key, &Device::Cpu, || Ok(prompt(2.0)))
            .unwrap();
        assert_eq!(p.original_len, 3);
        assert!(cache.load(&key, &Device::Cpu).is_some());
    }
}
