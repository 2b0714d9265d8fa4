//! Cheap structural checks of the container formats the components ship in, so a truncated or
//! garbled file is caught before a model loader trips over it: safetensors (header parses and
//! accounts for the file's exact length), JSON (parses), sharded-safetensors index (a
//! `weight_map` of plain shard names) and PyTorch checkpoints (`torch.save` zip archives must
//! end with their central directory; legacy pickles are accepted as they are).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::manifest::is_safe_relative;

/// The container format of a file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Safetensors,
    Json,
    /// `torch.save` output (`.pth`, `.pt`, `.ckpt`, `.bin`).
    Torch,
    /// Anything else: only its size and hash can be checked.
    Opaque,
}

impl Format {
    pub(crate) fn of(name: &str) -> Self {
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("safetensors") => Format::Safetensors,
            Some("json") => Format::Json,
            Some("pth" | "pt" | "ckpt" | "bin") => Format::Torch,
            _ => Format::Opaque,
        }
    }
}

/// Checks the structure of `path` as `format`; the error is the reason it is corrupt.
pub(crate) fn validate(path: &Path, format: Format) -> std::result::Result<(), String> {
    match format {
        Format::Safetensors => safetensors_tensors(path).map(|_| ()),
        Format::Json => {
            let text = std::fs::read(path).map_err(|e| e.to_string())?;
            serde_json::from_slice::<serde_json::Value>(&text)
                .map(|_| ())
                .map_err(|e| format!("not valid JSON ({e})"))
        }
        Format::Torch => torch_archive(path),
        Format::Opaque => Ok(()),
    }
}

/// The tensor names of a safetensors file whose header is consistent with its length.
pub(crate) fn safetensors_tensors(path: &Path) -> std::result::Result<BTreeSet<String>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: the map is read-only and dropped before returning; the cache never rewrites a
    // blob in place (downloads land in a separate `.part` file and are renamed).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&map).map_err(|e| {
        format!("safetensors header unreadable or inconsistent with the file length ({e:?})")
    })?;
    Ok(meta.tensors().into_keys().collect())
}

/// A `torch.save` zip must start with a local file header and end with an
/// end-of-central-directory record (which a truncated copy lacks). A legacy (pre-zip) pickle
/// starts with the pickle PROTO opcode and cannot be checked further without unpickling it.
fn torch_archive(path: &Path) -> std::result::Result<(), String> {
    const ZIP_START: &[u8] = b"PK\x03\x04";
    const ZIP_END: &[u8] = b"PK\x05\x06";
    const PICKLE_PROTO: u8 = 0x80;
    // The end record is 22 bytes plus a comment of at most 65535 bytes.
    const TAIL: u64 = 22 + 65535;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut head = [0u8; 4];
    file.read_exact(&mut head)
        .map_err(|_| "too short for a PyTorch checkpoint".to_string())?;
    if head[0] == PICKLE_PROTO {
        return Ok(());
    }
    if head != ZIP_START {
        return Err("not a PyTorch checkpoint (neither a zip archive nor a pickle)".into());
    }
    let start = len.saturating_sub(TAIL);
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(start))
        .and_then(|_| file.read_to_end(&mut tail))
        .map_err(|e| e.to_string())?;
    if tail.windows(ZIP_END.len()).any(|w| w == ZIP_END) {
        Ok(())
    } else {
        Err("truncated PyTorch checkpoint (the zip archive has no end record)".into())
    }
}

/// A sharded-safetensors index: which shard holds each tensor.
#[derive(Debug, Clone)]
pub(crate) struct ShardIndex {
    pub(crate) weight_map: BTreeMap<String, String>,
}

impl ShardIndex {
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let bad = |detail: String| Error::BadIndex {
            path: path.to_path_buf(),
            detail,
        };
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("no `weight_map` object".into()))?;
        let mut weight_map = BTreeMap::new();
        for (tensor, shard) in map {
            let shard = shard
                .as_str()
                .ok_or_else(|| bad(format!("shard of `{tensor}` is not a string")))?;
            if !is_safe_relative(shard) {
                return Err(bad(format!(
                    "shard name `{shard}` is not a plain relative path"
                )));
            }
            weight_map.insert(tensor.clone(), shard.to_string());
        }
        if weight_map.is_empty() {
            return Err(bad("`weight_map` is empty".into()));
        }
        Ok(Self { weight_map })
    }

    /// Every shard the index names, each once, sorted.
    pub(crate) fn shards(&self) -> BTreeSet<&str> {
        self.weight_map.values().map(String::as_str).collect()
    }

    /// The tensors the index places in `shard`.
    pub(crate) fn tensors_in<'a>(&'a self, shard: &'a str) -> impl Iterator<Item = &'a str> {
        self.weight_map
            .iter()
            .filter(move |(_, s)| s.as_str() == shard)
            .map(|(t, _)| t.as_str())
    }
}

/// Lowercase hex sha256 of a whole file.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True for a 64-digit hex string (how the Hub names LFS blobs: their sha256).
pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_names() {
        assert_eq!(
            Format::of("a/model-00001-of-00002.safetensors"),
            Format::Safetensors
        );
        assert_eq!(Format::of("config.json"), Format::Json);
        assert_eq!(Format::of("Wan2.2_VAE.pth"), Format::Torch);
        assert_eq!(Format::of("checkpoint-340000.ckpt"), Format::Torch);
        assert_eq!(Format::of("README"), Format::Opaque);
    }

    #[test]
    fn torch_archive_needs_its_end_record() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pth");
        let mut zip = b"PK\x03\x04payload".to_vec();
        zip.extend_from_slice(b"PK\x05\x06");
        zip.extend_from_slice(&[0u8; 18]);
        std::fs::write(&p, &zip).unwrap();
        assert_eq!(validate(&p, Format::Torch), Ok(()));
        std::fs::write(&p, &zip[..10]).unwrap();
        assert!(validate(&p, Format::Torch)
            .unwrap_err()
            .contains("truncated"));
        std::fs::write(&p, b"\x80\x02legacy").unwrap();
        assert_eq!(validate(&p, Format::Torch), Ok(()));
        std::fs::write(&p, b"<html>").unwrap();
        assert!(validate(&p, Format::Torch).unwrap_err().contains("neither"));
    }

    #[test]
    fn index_rejects_escaping_shard_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.safetensors.index.json");
        std::fs::write(&p, r#"{"weight_map": {"a": "../../etc/passwd"}}"#).unwrap();
        let err = ShardIndex::read(&p).unwrap_err().to_string();
        assert!(err.contains("not a plain relative path"), "{err}");
        std::fs::write(
            &p,
            r#"{"metadata": {}, "weight_map": {"a": "s1", "b": "s2", "c": "s1"}}"#,
        )
        .unwrap();
        let idx = ShardIndex::read(&p).unwrap();
        assert_eq!(idx.shards().into_iter().collect::<Vec<_>>(), ["s1", "s2"]);
        assert_eq!(idx.tensors_in("s1").collect::<Vec<_>>(), ["a", "c"]);
    }
}
