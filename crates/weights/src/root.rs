//! Where a component's files are on this machine.
//!
//! Two kinds of places are searched, in the order given:
//!
//! * a **weights directory** (`--weights-dir /data/ckpts`) laid out like the official example
//!   configs expect, one folder per component named by its `dir` in weights.toml:
//!
//!   ```text
//!   /data/ckpts/
//!     base/  distill/  540p_sr/  1080p_sr/     model.safetensors.index.json + shards
//!     turbo_vae/                               TurboV3-Wan22-TinyShallow_7_7.json, checkpoint-340000.ckpt
//!     t5gemma-9b-9b-ul2/                       config.json, tokenizer*.json, index + shards
//!     stable-audio-open-1.0/                   model.safetensors, model_config.json
//!     Wan2.2-TI2V-5B/                          Wan2.2_VAE.pth
//!   ```
//!
//!   which is what `git clone`/`huggingface-cli download --local-dir` of each repository
//!   produce (GAIR/daVinci-MagiHuman's subfolders land at the top of the directory);
//! * the **Hugging Face cache**, as [`crate::fetch()`] and `huggingface_hub` fill it: the
//!   component is the folder `snapshots/<commit>/<subfolder>` of the commit its revision points to.
//!
//! A component is taken from the first place that has its folder; [`crate::check()`] then says
//! whether every file in it is present and sound.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::cache::RepoCache;
use crate::error::{Error, Result};
use crate::hub::HubSettings;
use crate::manifest::Component;

/// A place that may hold components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A plain directory with one folder per component (see the module docs).
    Dir(PathBuf),
    /// A Hugging Face cache folder (`.../huggingface/hub`).
    HfCache(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Dir(p) => write!(f, "weights directory {}", p.display()),
            Source::HfCache(p) => write!(f, "Hugging Face cache {}", p.display()),
        }
    }
}

/// A component's folder and the place it was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The folder holding the component's files (its index, shards, configs).
    pub dir: PathBuf,
    /// Where it was found.
    pub source: Source,
}

impl Located {
    /// The local path of `name` (relative to the component folder).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The places searched for components, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsRoot {
    sources: Vec<Source>,
}

impl WeightsRoot {
    /// Searches `sources` in order.
    pub fn new(sources: Vec<Source>) -> Self {
        Self { sources }
    }

    /// The usual search: `weights_dir` first when given, then the cache of `hub`.
    pub fn from_settings(weights_dir: Option<&Path>, hub: &HubSettings) -> Self {
        let mut sources: Vec<Source> = weights_dir
            .map(|d| Source::Dir(d.to_path_buf()))
            .into_iter()
            .collect();
        sources.push(Source::HfCache(hub.cache_dir.clone()));
        Self::new(sources)
    }

    /// The places searched, in order.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The component's folder in the first place that has it.
    pub fn locate(&self, component: &Component) -> Option<Located> {
        self.sources.iter().find_map(|source| {
            let dir = match source {
                Source::Dir(root) => Some(root.join(&component.dir)).filter(|d| d.is_dir()),
                Source::HfCache(cache) => {
                    let snapshot =
                        RepoCache::new(cache, &component.repo, &component.revision).snapshot()?;
                    let dir = match &component.subfolder {
                        Some(sub) => snapshot.join(sub),
                        None => snapshot,
                    };
                    Some(dir).filter(|d| d.is_dir())
                }
            }?;
            Some(Located {
                dir,
                source: source.clone(),
            })
        })
    }

    /// Like [`WeightsRoot::locate`], with an error that lists every place searched.
    pub fn component_dir(&self, component: &Component) -> Result<Located> {
        self.locate(component)
            .ok_or_else(|| Error::NotFoundLocally {
                component: component.id.clone(),
                dir: component.dir.clone(),
                looked: self.sources.iter().map(|s| s.to_string()).collect(),
            })
    }
}
