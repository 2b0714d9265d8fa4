//! Test support: the convolution layers of the real Turbo-VAED decoder, read from the fixtures'
//! `manifest_full.json` (found by scanning, never by a fixed path), and a seeded generator for
//! the random sizes the tests put around them.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::Value;

use super::Dims3;

/// One convolution of the real decoder: weight `[c_out, c_in, kt, kh, kw]` (a Conv2d weight
/// `[c_out, c_in, kh, kw]` runs as `kt = 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub name: String,
    pub c_out: usize,
    pub c_in: usize,
    pub kernel: Dims3,
}

/// The fixture root as `cadence_parity::fixtures::root` finds it: `$CADENCE_FIXTURES`, else
/// `../shared/fixtures` beside the repository. Repeated here because the parity crate depends
/// on this one (and this file is also compiled into the parity crate's conv3d example).
fn fixture_root() -> PathBuf {
    match std::env::var_os("CADENCE_FIXTURES") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
    }
}

/// Every conv weight of `turbo_vaed` in the first manifest under the fixture root that has one.
/// Panics (a test failure) when there is none: the tests must not silently skip.
pub fn turbo_layers() -> Vec<Layer> {
    let root = fixture_root();
    let mut manifests = Vec::new();
    find_manifests(&root, &mut manifests);
    manifests.sort();
    for path in &manifests {
        let text = std::fs::read_to_string(path).unwrap();
        let json: Value = serde_json::from_str(&text).unwrap();
        let Some(keys) = json.pointer("/turbo_vaed/keys").and_then(Value::as_object) else {
            continue;
        };
        let mut layers: Vec<Layer> = keys
            .iter()
            .filter(|(name, _)| name.ends_with(".weight"))
            .filter_map(|(name, v)| {
                let shape: Vec<usize> = v
                    .get("shape")?
                    .as_array()?
                    .iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect::<Option<_>>()?;
                let (c_out, c_in, kernel) = match shape[..] {
                    [o, i, kt, kh, kw] => (o, i, Dims3::new(kt, kh, kw)),
                    [o, i, kh, kw] => (o, i, Dims3::new(1, kh, kw)),
                    _ => return None,
                };
                Some(Layer {
                    name: name.clone(),
                    c_out,
                    c_in,
                    kernel,
                })
            })
            .collect();
        layers.sort_by(|a, b| a.name.cmp(&b.name));
        if !layers.is_empty() {
            return layers;
        }
    }
    panic!(
        "no manifest_full.json with turbo_vaed conv weights under {} (set CADENCE_FIXTURES)",
        root.display()
    );
}

fn find_manifests(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_manifests(&p, out);
        } else if p.file_name().is_some_and(|n| n == "manifest_full.json") {
            out.push(p);
        }
    }
}

/// SplitMix64: a tiny seeded generator, so the random shapes are the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.range(0, items.len() - 1)]
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// Uniform in `(0, 1]`.
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// A standard-normal f32 tensor of `dims` on `dev` (Box-Muller; candle's CPU generator
    /// cannot be seeded).
    pub fn normal(&mut self, dims: &[usize], dev: &Device) -> Tensor {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let (u, v) = (self.unit(), self.unit());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect();
        Tensor::from_vec(v, dims, dev).unwrap()
    }
}
