//! The weights manifest: which components exist, where each lives on the Hugging Face Hub and
//! which files make it up. Its source of truth is `weights.toml` at the repository root (schema
//! documented there); [`Manifest::embedded`] is a copy compiled into the crate.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The repository's `weights.toml`, compiled in so the engine needs no file at run time.
const EMBEDDED: &str = include_str!("../../../weights.toml");

/// Manifest schema version this crate understands.
const SCHEMA: u32 = 1;

/// Every component the engine may need.
#[derive(Debug, Clone)]
pub struct Manifest {
    components: Vec<Component>,
}

/// One model component: a folder of files inside one Hub repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// Short name used by the CLI and the mode table (`distill`, `t5gemma`, ...).
    pub id: String,
    /// What it is, for users.
    pub description: String,
    /// Hub repository, `owner/name`.
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Folder inside the repository that holds the component, if any.
    pub subfolder: Option<String>,
    /// Folder name of the component inside a plain weights directory.
    pub dir: String,
    /// The repository needs an accepted licence and a token.
    pub gated: bool,
    /// Sharded safetensors: the index whose `weight_map` names the shards.
    pub index: Option<String>,
    /// Single file used instead when `index` does not exist upstream.
    pub unsharded: Option<String>,
    /// Files named explicitly.
    pub files: Vec<FileSpec>,
}

/// A file named in the manifest, with what is known about it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Name relative to the component folder.
    pub name: String,
    /// Size in bytes, where a verified value is known.
    #[serde(default)]
    pub size: Option<u64>,
    /// Lowercase hex sha256, where a verified value is known.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Absent upstream or locally is not an error.
    #[serde(default)]
    pub optional: bool,
}

/// A file on the Hub, as named in reports, progress and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// The component it belongs to.
    pub component: String,
    /// Hub repository, `owner/name`.
    pub repo: String,
    /// Branch, tag or commit asked for.
    pub revision: String,
    /// Path inside the repository (subfolder included).
    pub path: String,
}

impl fmt::Display for RemoteFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.repo, self.path)
    }
}

impl Component {
    /// Path of `name` (relative to the component folder) inside the repository.
    pub fn repo_path(&self, name: &str) -> String {
        match &self.subfolder {
            Some(sub) => format!("{sub}/{name}"),
            None => name.to_string(),
        }
    }

    /// The Hub file for `name` (relative to the component folder).
    pub fn remote(&self, name: &str) -> RemoteFile {
        RemoteFile {
            component: self.id.clone(),
            repo: self.repo.clone(),
            revision: self.revision.clone(),
            path: self.repo_path(name),
        }
    }

    /// The manifest's entry for `name`, if it names the file explicitly.
    pub fn spec(&self, name: &str) -> Option<&FileSpec> {
        self.files.iter().find(|f| f.name == name)
    }
}

impl Manifest {
    /// The copy of the repository's `weights.toml` compiled into this crate.
    pub fn embedded() -> Result<Self> {
        Self::parse(EMBEDDED, "embedded weights.toml")
    }

    /// Reads and validates a manifest file (an edited `weights.toml`).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let bad = |message: String| Error::Manifest {
            origin: origin.to_string(),
            message,
        };
        let raw: RawManifest = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if raw.schema != SCHEMA {
            return Err(bad(format!(
                "schema {} is not supported (this build reads schema {SCHEMA})",
                raw.schema
            )));
        }
        let components = raw
            .components
            .into_iter()
            .map(|(id, c)| c.into_component(id))
            .collect::<Vec<_>>();
        for c in &components {
            validate(c).map_err(|m| bad(format!("component `{}`: {m}", c.id)))?;
        }
        Ok(Self { components })
    }

    /// Every component, ordered by id.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The component called `id`.
    pub fn get(&self, id: &str) -> Result<&Component> {
        self.components
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Error::UnknownComponent {
                id: id.to_string(),
                known: self.components.iter().map(|c| c.id.clone()).collect(),
            })
    }

    /// The components called `ids`, in that order, each once.
    pub fn select<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<&Component>> {
        let mut out: Vec<&Component> = Vec::new();
        for id in ids {
            let c = self.get(id.as_ref())?;
            if !out.iter().any(|o| o.id == c.id) {
                out.push(c);
            }
        }
        Ok(out)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    schema: u32,
    components: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    description: String,
    repo: String,
    #[serde(default = "main_branch")]
    revision: String,
    subfolder: Option<String>,
    dir: String,
    #[serde(default)]
    gated: bool,
    index: Option<String>,
    unsharded: Option<String>,
    #[serde(default)]
    files: Vec<FileSpec>,
}

fn main_branch() -> String {
    "main".to_string()
}

impl RawComponent {
    fn into_component(self, id: String) -> Component {
        Component {
            id,
            description: self.description,
            repo: self.repo,
            revision: self.revision,
            subfolder: self.subfolder,
            dir: self.dir,
            gated: self.gated,
            index: self.index,
            unsharded: self.unsharded,
            files: self.files,
        }
    }
}

/// True for a non-empty relative path of plain segments: it can be joined under a folder and
/// put in a URL without escaping either (no `..`, no absolute path, no backslash).
pub(crate) fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

fn validate(c: &Component) -> std::result::Result<(), String> {
    let mut parts = c.repo.split('/');
    let repo_ok = matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty());
    if !repo_ok {
        return Err(format!("repo `{}` is not `owner/name`", c.repo));
    }
    if c.revision.is_empty() {
        return Err("revision is empty".into());
    }
    let mut names: Vec<&str> = vec![c.dir.as_str()];
    names.extend(c.subfolder.as_deref());
    names.extend(c.index.as_deref());
    names.extend(c.unsharded.as_deref());
    names.extend(c.files.iter().map(|f| f.name.as_str()));
    if let Some(bad) = names.iter().find(|n| !is_safe_relative(n)) {
        return Err(format!(
            "`{bad}` is not a plain relative path (no `..`, no leading `/`)"
        ));
    }
    if c.files.is_empty() && c.index.is_none() {
        return Err("names no file: give `files`, `index`, or both".into());
    }
    if c.unsharded.is_some() && c.index.is_none() {
        return Err("`unsharded` is a fallback for `index`, which is missing".into());
    }
    for f in &c.files {
        if let Some(h) = &f.sha256 {
            if h.len() != 64
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(format!(
                    "sha256 of `{}` is not 64 lowercase hex digits",
                    f.name
                ));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = c.files.iter().find(|f| !seen.insert(&f.name)) {
        return Err(format!("file `{}` is listed twice", dup.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
schema = 1
[components.a]
description = "A"
repo = "o/a"
dir = "a"
files = [{ name = "x.json" }]
"#;

    #[test]
    fn defaults_apply() {
        let m = Manifest::parse(MINIMAL, "t").unwrap();
        let a = m.get("a").unwrap();
        assert_eq!(a.revision, "main");
        assert!(!a.gated);
        assert_eq!(a.repo_path("x.json"), "x.json");
    }

    #[test]
    fn rejects_bad_entries_naming_component_and_field() {
        let cases = [
            (MINIMAL.replace("o/a", "oa"), "not `owner/name`"),
            (
                MINIMAL.replace("x.json", "../x.json"),
                "plain relative path",
            ),
            (
                MINIMAL.replace("{ name = \"x.json\" }", "{ name = \"x\", sha256 = \"AB\" }"),
                "64 lowercase hex",
            ),
            (MINIMAL.replace("schema = 1", "schema = 2"), "schema 2"),
            (
                MINIMAL.replace("dir = \"a\"", "dir = \"a\"\nbogus = 1"),
                "bogus",
            ),
        ];
        for (text, want) in cases {
            let err = Manifest::parse(&text, "weights.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
            assert!(err.starts_with("weights.toml:"), "{err}");
        }
    }

    #[test]
    fn unknown_component_lists_known_ones() {
        let m = Manifest::parse(MINIMAL, "t").unwrap();
        let err = m.select(&["a", "zz"]).unwrap_err().to_string();
        assert_eq!(err, "unknown component `zz`: weights.toml defines a");
    }
}
