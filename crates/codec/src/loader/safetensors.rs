//! Safetensors files, optionally holding a whole larger model of which the codec is one prefix
//! (Stable Audio Open keeps its VAE under `pretransform.model.`).

use std::collections::BTreeMap;
use std::path::Path;

use cadence_core::{Checkpoint, Result};

use super::{Source, StateDict, Stored};

impl StateDict {
    /// The tensors under `prefix` (stripped) of a safetensors checkpoint (file, folder or shard
    /// index, as [`Checkpoint::open`] accepts). Keys outside the prefix are ignored.
    pub fn from_safetensors(path: impl AsRef<Path>, prefix: &str) -> Result<Self> {
        let path = path.as_ref();
        let ckpt = Checkpoint::open(path)?;
        let keys: BTreeMap<_, _> = ckpt
            .stored()
            .iter()
            .filter_map(|(k, t)| {
                let key = k.strip_prefix(prefix)?;
                Some((key.to_string(), Stored::new(k, &t.shape, t.dtype)))
            })
            .collect();
        Ok(Self::from_parts(path, Source::Safetensors(ckpt), keys))
    }
}
