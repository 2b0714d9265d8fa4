//! Test support: a tiny stand-in for the Hugging Face Hub on 127.0.0.1, and tiny model files.
//!
//! The hub answers the routes the fetcher uses, with the Hub's headers:
//! `GET /{owner}/{name}/resolve/{revision}/{path}` gives `X-Repo-Commit`, `ETag` and, for LFS
//! files, a 302 to `/cdn/{sha256}` with `X-Linked-Etag` (the sha256) and `X-Linked-Size`;
//! small files are served directly. Both routes honour `Range` (206 + `Content-Range`).
//! Gated repositories answer 401 without a token and 403 with a token that has no access, with
//! `X-Error-Code: GatedRepo`; unknown repos, revisions and files answer like the Hub
//! (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`). Faults can be injected per file: drop
//! the connection after N bytes (once), ignore `Range`, or advertise a wrong sha256.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// One file of a fake repository.
#[derive(Clone, Default)]
pub struct FakeFile {
    pub content: Vec<u8>,
    /// Served like an LFS file: redirect to the CDN route, sha256 etag.
    pub lfs: bool,
    /// Advertise this sha256 instead of the real one.
    pub wrong_sha: Option<String>,
    /// Answer ranged requests with the whole file (200).
    pub ignore_range: bool,
    /// Close the connection after this many body bytes, for this many requests.
    pub drop_after: Option<(usize, u32)>,
}

/// A fake repository.
#[derive(Clone, Default)]
pub struct FakeRepo {
    pub commit: String,
    /// Some(token): gated, only this token has access.
    pub gated_token: Option<String>,
    pub files: HashMap<String, FakeFile>,
}

/// A request the hub received.
#[derive(Clone, Debug)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, FakeRepo>,
    log: Vec<Logged>,
}

/// The running fake hub; stops when dropped.
pub struct FakeHub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl FakeHub {
    pub fn start(repos: HashMap<String, FakeRepo>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            repos,
            log: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, addr, &st));
            }
        });
        Self {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// Changes one file of a repository.
    pub fn edit(&self, repo: &str, path: &str, f: impl FnOnce(&mut FakeFile)) {
        let mut st = self.state.lock().unwrap();
        f(st.repos.get_mut(repo).unwrap().files.get_mut(path).unwrap());
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close after this many body bytes.
    cut: Option<usize>,
}

impl Reply {
    fn error(status: u16, code: &str) -> Self {
        Reply {
            status,
            headers: vec![("X-Error-Code".into(), code.into())],
            body: Vec::new(),
            cut: None,
        }
    }
}

fn serve(mut conn: TcpStream, addr: SocketAddr, state: &Mutex<State>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let logged = Logged {
        path: path.clone(),
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
    };
    let reply = {
        let mut st = state.lock().unwrap();
        st.log.push(logged.clone());
        route(&mut st, addr, &logged)
    };
    let reason = match reply.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Other",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.body.len()
    ));
    let _ = conn.write_all(head.as_bytes());
    let body = match reply.cut {
        Some(n) => &reply.body[..n.min(reply.body.len())],
        None => &reply.body[..],
    };
    let _ = conn.write_all(body);
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Both);
}

fn route(st: &mut State, addr: SocketAddr, req: &Logged) -> Reply {
    if let Some(sha) = req.path.strip_prefix("/cdn/") {
        // The CDN serves any blob by content hash, with no auth.
        let found = st
            .repos
            .values_mut()
            .flat_map(|r| r.files.values_mut())
            .find(|f| sha256_hex(&f.content) == sha);
        return match found {
            Some(f) => content(f, req.range.as_deref(), Vec::new()),
            None => Reply::error(404, "EntryNotFound"),
        };
    }
    let parts: Vec<&str> = req.path.trim_start_matches('/').splitn(5, '/').collect();
    let [owner, name, "resolve", revision, file] = parts[..] else {
        return Reply::error(404, "RepoNotFound");
    };
    let repo_id = format!("{owner}/{name}");
    let Some(repo) = st.repos.get_mut(&repo_id) else {
        return Reply::error(401, "RepoNotFound");
    };
    if let Some(token) = &repo.gated_token {
        match &req.authorization {
            None => return Reply::error(401, "GatedRepo"),
            Some(a) if a != &format!("Bearer {token}") => return Reply::error(403, "GatedRepo"),
            Some(_) => {}
        }
    }
    if revision != "main" && revision != repo.commit {
        return Reply::error(404, "RevisionNotFound");
    }
    let commit = repo.commit.clone();
    let Some(f) = repo.files.get_mut(file) else {
        return Reply::error(404, "EntryNotFound");
    };
    let sha = f
        .wrong_sha
        .clone()
        .unwrap_or_else(|| sha256_hex(&f.content));
    let mut headers = vec![("X-Repo-Commit".to_string(), commit)];
    if f.lfs {
        headers.push(("X-Linked-Etag".into(), format!("\"{sha}\"")));
        headers.push(("X-Linked-Size".into(), f.content.len().to_string()));
        headers.push(("ETag".into(), "\"git-pointer-etag\"".into()));
        headers.push((
            "Location".into(),
            format!("http://{addr}/cdn/{}", sha256_hex(&f.content)),
        ));
        return Reply {
            status: 302,
            headers,
            body: Vec::new(),
            cut: None,
        };
    }
    // Small files: the etag is a git blob id (40 hex), not a content hash we could check.
    headers.push((
        "ETag".into(),
        format!("\"{}\"", &sha256_hex(&f.content)[..40]),
    ));
    content(f, req.range.as_deref(), headers)
}

/// The file's bytes, honouring `Range: bytes=a-` / `bytes=a-b` unless told not to.
fn content(f: &mut FakeFile, range: Option<&str>, mut headers: Vec<(String, String)>) -> Reply {
    let total = f.content.len();
    headers.push(("Accept-Ranges".into(), "bytes".into()));
    let parsed = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            let a: usize = a.parse().unwrap();
            let b: usize = if b.is_empty() {
                total.saturating_sub(1)
            } else {
                b.parse().unwrap()
            };
            (a, b)
        });
    let cut = match &mut f.drop_after {
        Some((n, times)) if *times > 0 && parsed != Some((0, 0)) => {
            *times -= 1;
            Some(*n)
        }
        _ => None,
    };
    match parsed {
        Some((a, _)) if a >= total => Reply::error(416, "RangeNotSatisfiable"),
        Some((a, b)) if !f.ignore_range => {
            let b = b.min(total - 1);
            headers.push(("Content-Range".into(), format!("bytes {a}-{b}/{total}")));
            Reply {
                status: 206,
                headers,
                body: f.content[a..=b].to_vec(),
                cut,
            }
        }
        _ => Reply {
            status: 200,
            headers,
            body: f.content.clone(),
            cut,
        },
    }
}

/// A tiny safetensors file holding f32 tensors `names`, each `[len]`, with distinct values.
pub fn safetensors(names: &[&str], len: usize) -> Vec<u8> {
    let datas: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, _)| {
            (0..len)
                .flat_map(|j| ((i * 1000 + j) as f32).to_le_bytes())
                .collect()
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = names
        .iter()
        .zip(&datas)
        .map(|(n, d)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![len], d)
                .unwrap();
            (n.to_string(), view)
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// A stand-in for a `torch.save` zip: local-header magic, payload, end record.
pub fn torch_zip(payload: &[u8]) -> Vec<u8> {
    let mut out = b"PK\x03\x04".to_vec();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0u8; 18]);
    out
}

/// A sharded-safetensors index mapping each tensor to its shard.
pub fn index(entries: &[(&str, &str)]) -> Vec<u8> {
    let map: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(t, s)| (t.to_string(), serde_json::Value::String(s.to_string())))
        .collect();
    serde_json::to_vec_pretty(
        &serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map}),
    )
    .unwrap()
}

pub fn small(content: &[u8]) -> FakeFile {
    FakeFile {
        content: content.to_vec(),
        ..Default::default()
    }
}

pub fn lfs(content: Vec<u8>) -> FakeFile {
    FakeFile {
        content,
        lfs: true,
        ..Default::default()
    }
}

pub const TOKEN: &str = "hf_test_token";

/// Fake copies of the repositories the embedded manifest names, with tiny files in the real
/// layouts: the distilled DiT (2 shards), Turbo-VAED, T5Gemma (gated, 2 shards, no
/// special_tokens_map.json), Stable Audio Open (gated) and the Wan VAE.
pub fn real_layout_repos() -> HashMap<String, FakeRepo> {
    let commit = |c: char| c.to_string().repeat(40);
    let dit_files = HashMap::from([
        (
            "distill/model.safetensors.index.json".to_string(),
            small(&index(&[
                ("block.a", "model-00001-of-00002.safetensors"),
                ("block.b", "model-00001-of-00002.safetensors"),
                ("block.c", "model-00002-of-00002.safetensors"),
            ])),
        ),
        (
            "distill/model-00001-of-00002.safetensors".to_string(),
            lfs(safetensors(&["block.a", "block.b"], 3000)),
        ),
        (
            "distill/model-00002-of-00002.safetensors".to_string(),
            lfs(safetensors(&["block.c"], 5000)),
        ),
        (
            "turbo_vae/TurboV3-Wan22-TinyShallow_7_7.json".to_string(),
            small(br#"{"latent_channels": 48}"#),
        ),
        (
            "turbo_vae/checkpoint-340000.ckpt".to_string(),
            lfs(torch_zip(&[7u8; 4000])),
        ),
    ]);
    let t5_files = HashMap::from([
        (
            "config.json".to_string(),
            small(br#"{"model_type": "t5gemma"}"#),
        ),
        ("tokenizer.json".to_string(), small(br#"{"model": {}}"#)),
        (
            "tokenizer_config.json".to_string(),
            small(br#"{"add_bos_token": false}"#),
        ),
        (
            "model.safetensors.index.json".to_string(),
            small(&index(&[
                ("model.encoder.a", "model-00001-of-00002.safetensors"),
                ("model.decoder.b", "model-00002-of-00002.safetensors"),
            ])),
        ),
        (
            "model-00001-of-00002.safetensors".to_string(),
            lfs(safetensors(&["model.encoder.a"], 2000)),
        ),
        (
            "model-00002-of-00002.safetensors".to_string(),
            lfs(safetensors(&["model.decoder.b"], 2000)),
        ),
    ]);
    let audio_files = HashMap::from([
        (
            "model.safetensors".to_string(),
            lfs(safetensors(&["pretransform.model.x"], 4000)),
        ),
        (
            "model_config.json".to_string(),
            small(br#"{"sample_rate": 44100}"#),
        ),
    ]);
    let wan_files = HashMap::from([("Wan2.2_VAE.pth".to_string(), lfs(torch_zip(&[3u8; 6000])))]);
    HashMap::from([
        (
            "GAIR/daVinci-MagiHuman".to_string(),
            FakeRepo {
                commit: commit('a'),
                gated_token: None,
                files: dit_files,
            },
        ),
        (
            "google/t5gemma-9b-9b-ul2".to_string(),
            FakeRepo {
                commit: commit('b'),
                gated_token: Some(TOKEN.into()),
                files: t5_files,
            },
        ),
        (
            "stabilityai/stable-audio-open-1.0".to_string(),
            FakeRepo {
                commit: commit('c'),
                gated_token: Some(TOKEN.into()),
                files: audio_files,
            },
        ),
        (
            "Wan-AI/Wan2.2-TI2V-5B".to_string(),
            FakeRepo {
                commit: commit('d'),
                gated_token: None,
                files: wan_files,
            },
        ),
    ])
}
