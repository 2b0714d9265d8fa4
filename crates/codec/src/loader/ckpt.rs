//! PyTorch Lightning checkpoints (`checkpoint-340000.ckpt` of Turbo-VAED).
//!
//! The file is a `torch.save` zip of a dict; the weights the reference uses are the EMA copy under
//! one top-level entry, every key prefixed by the `DistributedDataParallel` wrapper's `module.`.
//! Other top-level entries (optimizer state, counters) are never read.

use std::collections::BTreeMap;
use std::path::Path;

use cadence_core::{Error, Result};

use super::{Source, StateDict, Stored, TorchArchive};

/// How a Lightning checkpoint wraps a model's state dict.
#[derive(Debug, Clone, Copy)]
pub struct LightningLayout<'a> {
    /// Top-level entry holding the state dict (`ema_state_dict`).
    pub entry: &'a str,
    /// Prefix every stored key carries (`module.`); stripped.
    pub prefix: &'a str,
    /// Model-key prefixes of training-only tensors to drop (distillation heads).
    pub ignored: &'a [&'a str],
}

impl StateDict {
    /// The state dict inside a Lightning checkpoint, mapped to model keys.
    pub fn from_lightning_ckpt(
        path: impl AsRef<Path>,
        layout: LightningLayout<'_>,
    ) -> Result<Self> {
        let path = path.as_ref();
        let archive = TorchArchive::open(path, Some(layout.entry))?;
        let mut keys = BTreeMap::new();
        for (stored, t) in archive.tensors() {
            let key = stored.strip_prefix(layout.prefix).ok_or_else(|| {
                Error::checkpoint(
                    path,
                    format!(
                        "key {stored} in {} lacks the {:?} prefix; is this the right checkpoint?",
                        layout.entry, layout.prefix
                    ),
                )
            })?;
            if layout.ignored.iter().any(|p| key.starts_with(p)) {
                continue;
            }
            keys.insert(key.to_string(), Stored::new(stored, &t.shape, t.dtype));
        }
        Ok(Self::from_parts(path, Source::Torch(archive), keys))
    }
}
