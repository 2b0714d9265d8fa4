//! The download path end to end against a local stand-in for the Hub (tests/support): the
//! embedded manifest and the mode table drive what is fetched; each fault gives its outcome
//! and a one-sentence message with the fix.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cadence_weights::{
    check, fetch, CheckOptions, Error, FetchOptions, FetchReport, FileOutcome, HubSettings,
    Manifest, Progress, RemoteFile, Token, WeightsRoot,
};
use support::{real_layout_repos, sha256_hex, FakeHub, TOKEN};

/// Records every progress event.
#[derive(Default)]
struct Recorder {
    started: Vec<(String, u64, u64)>,
    bytes: u64,
    retries: Vec<(String, u32, u64)>,
    finished: Vec<String>,
}

impl Progress for Recorder {
    fn download_started(&mut self, file: &RemoteFile, total: u64, already: u64) {
        self.started.push((file.path.clone(), total, already));
    }
    fn bytes_received(&mut self, _: &RemoteFile, bytes: u64) {
        self.bytes += bytes;
    }
    fn retrying(&mut self, file: &RemoteFile, attempt: u32, offset: u64, _: &Error) {
        self.retries.push((file.path.clone(), attempt, offset));
    }
    fn file_finished(&mut self, file: &RemoteFile, _: &FileOutcome) {
        self.finished.push(file.path.clone());
    }
}

fn options(hub: &FakeHub, cache: &Path, token: Option<&str>) -> FetchOptions {
    FetchOptions {
        hub: HubSettings {
            endpoint: hub.endpoint(),
            cache_dir: cache.to_path_buf(),
            token: token.map(Token::explicit),
            offline: false,
        },
        retries: 0,
        retry_wait: Duration::ZERO,
    }
}

fn outcome<'a>(report: &'a FetchReport, component: &str, name: &str) -> &'a FileOutcome {
    let c = report
        .components
        .iter()
        .find(|c| c.id == component)
        .unwrap();
    &c.files
        .iter()
        .find(|f| f.file.path.ends_with(name))
        .unwrap_or_else(|| panic!("{component}/{name} not in report: {report:?}"))
        .outcome
}

fn failure(report: &FetchReport) -> &Error {
    report.errors().next().map(|(_, e)| e).expect("a failure")
}

fn cdn_requests(hub: &FakeHub) -> usize {
    hub.log()
        .iter()
        .filter(|r| r.path.starts_with("/cdn/"))
        .count()
}

fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

#[test]
fn fetches_a_mode_into_the_hf_cache_then_checks_and_reuses_it() {
    let repos = real_layout_repos();
    let hub = FakeHub::start(repos.clone());
    let cache = tempfile::tempdir().unwrap();
    let manifest = Manifest::embedded().unwrap();
    // What the distilled text-to-video mode needs (cadence_pipeline::models::Mode).
    let ids = ["distill", "t5gemma", "turbo_vae", "stable_audio"];
    let opts = options(&hub, cache.path(), Some(TOKEN));

    let mut rec = Recorder::default();
    let report = fetch(&manifest, &ids, &opts, &mut rec).unwrap();
    assert!(report.is_complete(), "{report:?}");
    let served: u64 = [
        "GAIR/daVinci-MagiHuman",
        "google/t5gemma-9b-9b-ul2",
        "stabilityai/stable-audio-open-1.0",
    ]
    .iter()
    .flat_map(|r| repos[*r].files.values())
    .map(|f| f.content.len() as u64)
    .sum();
    assert_eq!(report.downloaded_bytes(), served);
    assert_eq!(rec.bytes, served);
    assert!(matches!(
        outcome(&report, "t5gemma", "special_tokens_map.json"),
        FileOutcome::AbsentOptional
    ));
    // Explicit files, index, then both shards.
    let distill: Vec<&str> = report.components[0]
        .files
        .iter()
        .map(|f| f.file.path.as_str())
        .collect();
    assert_eq!(
        distill,
        [
            "distill/model.safetensors.index.json",
            "distill/model-00001-of-00002.safetensors",
            "distill/model-00002-of-00002.safetensors"
        ]
    );

    // The Hugging Face cache layout: relative links into blobs named by sha256, a ref to the commit.
    let gair = repo_dir(cache.path(), "GAIR/daVinci-MagiHuman");
    let commit = "a".repeat(40);
    let shard = &repos["GAIR/daVinci-MagiHuman"].files["distill/model-00001-of-00002.safetensors"];
    let pointer = gair
        .join("snapshots")
        .join(&commit)
        .join("distill/model-00001-of-00002.safetensors");
    assert_eq!(
        std::fs::read_link(&pointer).unwrap(),
        Path::new("../../../blobs").join(sha256_hex(&shard.content))
    );
    assert_eq!(std::fs::read(&pointer).unwrap(), shard.content);
    assert_eq!(
        std::fs::read_to_string(gair.join("refs/main")).unwrap(),
        commit
    );
    assert_eq!(
        report.components[0].dir.as_deref(),
        Some(
            gair.join("snapshots")
                .join(&commit)
                .join("distill")
                .as_path()
        )
    );
    let blobs: Vec<_> = std::fs::read_dir(gair.join("blobs")).unwrap().collect();
    assert!(blobs.iter().all(|b| !b
        .as_ref()
        .unwrap()
        .path()
        .to_string_lossy()
        .ends_with(".part")));

    // check() finds everything through the cache, hashes included, and runs the layout hook.
    let root = WeightsRoot::from_settings(None, &opts.hub);
    let seen = std::cell::RefCell::new(Vec::new());
    let hook = |c: &cadence_weights::Component, dir: &Path| {
        assert!(dir.is_dir());
        seen.borrow_mut().push(c.id.clone());
        Vec::new()
    };
    let checked = check(
        &manifest,
        &ids,
        &root,
        &CheckOptions { hashes: true },
        Some(&hook),
    )
    .unwrap();
    assert!(checked.is_ok(), "{:?}", checked.problems());
    assert_eq!(*seen.borrow(), ids);
    let complaining =
        |c: &cadence_weights::Component, _: &Path| vec![format!("{} lacks tensor x.weight", c.id)];
    let checked = check(
        &manifest,
        &["distill"],
        &root,
        &CheckOptions::default(),
        Some(&complaining),
    )
    .unwrap();
    assert!(!checked.is_ok());
    assert_eq!(
        checked.problems(),
        ["distill: distill lacks tensor x.weight"]
    );

    // A second fetch downloads nothing; an offline one sends no request at all.
    hub.clear_log();
    let again = fetch(&manifest, &ids, &opts, &mut ()).unwrap();
    assert!(again.is_complete());
    assert_eq!(again.downloaded_bytes(), 0);
    assert_eq!(cdn_requests(&hub), 0);
    hub.clear_log();
    let mut offline = opts.clone();
    offline.hub.offline = true;
    let cached = fetch(&manifest, &ids, &offline, &mut ()).unwrap();
    assert!(cached.is_complete(), "{cached:?}");
    assert!(matches!(
        outcome(&cached, "distill", "00002.safetensors"),
        FileOutcome::Present { .. }
    ));
    assert!(hub.log().is_empty());
}

#[test]
fn a_dropped_connection_is_resumed_with_a_range_request() {
    let repos = real_layout_repos();
    let hub = FakeHub::start(repos.clone());
    let cache = tempfile::tempdir().unwrap();
    let manifest = Manifest::embedded().unwrap();
    let path = "Wan2.2_VAE.pth";
    let content = repos["Wan-AI/Wan2.2-TI2V-5B"].files[path].content.clone();
    let cut = 2500;
    hub.edit("Wan-AI/Wan2.2-TI2V-5B", path, |f| {
        f.drop_after = Some((cut, 1))
    });

    // No retries: the fetch fails, keeps the bytes in the .part, and publishes nothing.
    let opts = options(&hub, cache.path(), None);
    let report = fetch(&manifest, &["wan_vae"], &opts, &mut ()).unwrap();
    let err = failure(&report);
    assert!(
        matches!(err, Error::Network { kept, .. } if *kept == cut as u64),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("Wan-AI/Wan2.2-TI2V-5B/Wan2.2_VAE.pth"),
        "{msg}"
    );
    assert!(
        msg.contains("the 2500 bytes received so far are kept and the download resumes"),
        "{msg}"
    );
    let blob = repo_dir(cache.path(), "Wan-AI/Wan2.2-TI2V-5B")
        .join("blobs")
        .join(sha256_hex(&content));
    assert!(!blob.exists());
    let mut part = blob.clone().into_os_string();
    part.push(".part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), cut as u64);
    let root = WeightsRoot::from_settings(None, &opts.hub);
    let checked = check(
        &manifest,
        &["wan_vae"],
        &root,
        &CheckOptions::default(),
        None,
    )
    .unwrap();
    assert!(!checked.is_ok(), "a partial file must not count as present");

    // The next fetch asks for the rest only.
    hub.clear_log();
    let mut rec = Recorder::default();
    let report = fetch(&manifest, &["wan_vae"], &opts, &mut rec).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert!(matches!(
        outcome(&report, "wan_vae", path),
        FileOutcome::Downloaded { bytes, resumed_from, .. }
            if *resumed_from == cut as u64 && *bytes == (content.len() - cut) as u64
    ));
    assert_eq!(
        rec.started,
        [(path.to_string(), content.len() as u64, cut as u64)]
    );
    assert_eq!(rec.bytes, (content.len() - cut) as u64);
    let ranges: Vec<_> = hub
        .log()
        .into_iter()
        .filter(|r| r.path.starts_with("/cdn/"))
        .collect();
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0].range.as_deref(), Some("bytes=2500-"));
    assert_eq!(std::fs::read(&blob).unwrap(), content);
    assert!(!Path::new(&part).exists());

    // With retries the same fault is absorbed within one fetch.
    let cache = tempfile::tempdir().unwrap();
    hub.edit("Wan-AI/Wan2.2-TI2V-5B", path, |f| {
        f.drop_after = Some((cut, 1))
    });
    let mut opts = options(&hub, cache.path(), None);
    opts.retries = 2;
    let mut rec = Recorder::default();
    let report = fetch(&manifest, &["wan_vae"], &opts, &mut rec).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(rec.retries, [(path.to_string(), 1, cut as u64)]);
    assert_eq!(rec.bytes, content.len() as u64);
}

#[test]
fn a_server_that_ignores_range_restarts_the_file_instead_of_appending() {
    let repos = real_layout_repos();
    let hub = FakeHub::start(repos.clone());
    let cache = tempfile::tempdir().unwrap();
    let manifest = Manifest::embedded().unwrap();
    let path = "Wan2.2_VAE.pth";
    let content = repos["Wan-AI/Wan2.2-TI2V-5B"].files[path].content.clone();
    hub.edit("Wan-AI/Wan2.2-TI2V-5B", path, |f| {
        f.drop_after = Some((1000, 1));
        f.ignore_range = true;
    });
    let mut opts = options(&hub, cache.path(), None);
    opts.retries = 1;
    let mut rec = Recorder::default();
    let report = fetch(&manifest, &["wan_vae"], &opts, &mut rec).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(
        rec.started.len(),
        2,
        "restarted from byte 0: {:?}",
        rec.started
    );
    assert_eq!(rec.started[1].2, 0);
    let blob = repo_dir(cache.path(), "Wan-AI/Wan2.2-TI2V-5B")
        .join("blobs")
        .join(sha256_hex(&content));
    assert_eq!(std::fs::read(blob).unwrap(), content);
}

#[test]
fn a_checksum_mismatch_deletes_the_download() {
    let hub = FakeHub::start(real_layout_repos());
    let cache = tempfile::tempdir().unwrap();
    let manifest = Manifest::embedded().unwrap();
    let wrong = "f".repeat(64);
    hub.edit("Wan-AI/Wan2.2-TI2V-5B", "Wan2.2_VAE.pth", |f| {
        f.wrong_sha = Some(wrong.clone())
    });
    let report = fetch(
        &manifest,
        &["wan_vae"],
        &options(&hub, cache.path(), None),
        &mut (),
    )
    .unwrap();
    let err = failure(&report);
    assert!(
        matches!(err, Error::ChecksumMismatch { expected, .. } if *expected == wrong),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "checksum mismatch for Wan-AI/Wan2.2-TI2V-5B/Wan2.2_VAE.pth: expected sha256 ffff"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("the download was deleted, fetch again"),
        "{msg}"
    );
    let blobs = repo_dir(cache.path(), "Wan-AI/Wan2.2-TI2V-5B").join("blobs");
    assert_eq!(
        std::fs::read_dir(blobs).unwrap().count(),
        0,
        "no blob and no .part left"
    );
    assert!(!repo_dir(cache.path(), "Wan-AI/Wan2.2-TI2V-5B")
        .join("snapshots")
        .exists());
}

#[test]
fn a_manifest_hash_the_hub_contradicts_stops_before_downloading() {
    let hub = FakeHub::start(real_layout_repos());
    let cache = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../weights.toml"))
        .unwrap()
        .replace(
            "{ name = \"Wan2.2_VAE.pth\" }",
            &format!(
                "{{ name = \"Wan2.2_VAE.pth\", sha256 = \"{}\" }}",
                "0".repeat(64)
            ),
        );
    let manifest = Manifest::parse(&text, "weights.toml").unwrap();
    let report = fetch(
        &manifest,
        &["wan_vae"],
        &options(&hub, cache.path(), None),
        &mut (),
    )
    .unwrap();
    let msg = failure(&report).to_string();
    assert!(msg.contains("weights.toml says sha256 0000"), "{msg}");
    assert!(
        msg.contains("update weights.toml or pin the revision"),
        "{msg}"
    );
    assert_eq!(cdn_requests(&hub), 0);
}

#[test]
fn missing_files_repos_and_revisions_say_what_to_fix() {
    let hub = FakeHub::start(real_layout_repos());
    let cache = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../weights.toml"))
        .unwrap();
    let opts = options(&hub, cache.path(), Some(TOKEN));
    let run = |text: String, id: &str| {
        let manifest = Manifest::parse(&text, "weights.toml").unwrap();
        fetch(&manifest, &[id], &opts, &mut ()).unwrap()
    };

    let r = run(
        base.replace("Wan2.2_VAE.pth", "Wan2.2_VAE_v2.pth"),
        "wan_vae",
    );
    let err = failure(&r);
    assert!(matches!(err, Error::FileNotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Wan2.2_VAE_v2.pth was not found in Wan-AI/Wan2.2-TI2V-5B at revision main: the repository \
         layout changed; update component `wan_vae` in weights.toml or pin a revision that has the file"
    );

    let r = run(
        base.replace("Wan-AI/Wan2.2-TI2V-5B", "Wan-AI/Wan9"),
        "wan_vae",
    );
    let msg = failure(&r).to_string();
    assert!(
        msg.starts_with("repository Wan-AI/Wan9 was not found on http://127.0.0.1:"),
        "{msg}"
    );

    let r = run(
        base.replace(
            "repo = \"Wan-AI/Wan2.2-TI2V-5B\"\nrevision = \"main\"",
            "repo = \"Wan-AI/Wan2.2-TI2V-5B\"\nrevision = \"v9\"",
        ),
        "wan_vae",
    );
    assert_eq!(
        failure(&r).to_string(),
        "revision `v9` of Wan-AI/Wan2.2-TI2V-5B does not exist: fix the `revision` of component `wan_vae` in weights.toml"
    );

    // An index that does not exist falls back to the single file when the manifest allows it.
    let r = run(base.clone(), "base");
    let err = failure(&r);
    assert!(
        matches!(err, Error::FileNotFound { file } if file.path == "base/model.safetensors"),
        "index absent, then the fallback is tried: {err:?}"
    );
    assert!(matches!(
        outcome(&r, "base", "model.safetensors.index.json"),
        FileOutcome::AbsentOptional
    ));
}

#[test]
fn gated_repositories_without_access_name_the_licence_page_and_the_token() {
    let hub = FakeHub::start(real_layout_repos());
    let cache = tempfile::tempdir().unwrap();
    let manifest = Manifest::embedded().unwrap();

    let report = fetch(
        &manifest,
        &["stable_audio", "wan_vae"],
        &options(&hub, cache.path(), None),
        &mut (),
    )
    .unwrap();
    let err = failure(&report);
    assert!(matches!(err, Error::GatedNoToken { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "stabilityai/stable-audio-open-1.0 is gated: accept its licence at \
         https://huggingface.co/stabilityai/stable-audio-open-1.0 and set HF_TOKEN (or run `huggingface-cli login`)"
    );
    // The gated repository is abandoned after its first file; the others are still fetched.
    assert_eq!(report.components[0].files.len(), 1);
    assert!(matches!(
        outcome(&report, "wan_vae", "Wan2.2_VAE.pth"),
        FileOutcome::Downloaded { .. }
    ));
    assert!(!report.is_complete());

    let report = fetch(
        &manifest,
        &["t5gemma"],
        &options(&hub, cache.path(), Some("hf_other")),
        &mut (),
    )
    .unwrap();
    let err = failure(&report);
    assert!(matches!(err, Error::GatedNoAccess { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "google/t5gemma-9b-9b-ul2 is gated and the token from the command line has no access to it: \
         accept its licence at https://huggingface.co/google/t5gemma-9b-9b-ul2 while logged in as the token's owner"
    );
    // The token went to the endpoint only.
    assert!(hub
        .log()
        .iter()
        .filter(|r| r.path.starts_with("/cdn/"))
        .all(|r| r.authorization.is_none()));
}

#[test]
fn offline_mode_without_a_cached_copy_says_how_to_get_one() {
    let hub = FakeHub::start(real_layout_repos());
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(&hub, cache.path(), None);
    opts.hub.offline = true;
    let manifest = Manifest::embedded().unwrap();
    let report = fetch(&manifest, &["turbo_vae"], &opts, &mut ()).unwrap();
    let err = failure(&report);
    assert!(matches!(err, Error::NotCached { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("GAIR/daVinci-MagiHuman/turbo_vae/TurboV3-Wan22-TinyShallow_7_7.json is not in the Hugging Face cache"), "{msg}");
    assert!(
        msg.ends_with(
            "and offline mode is on: fetch it once with network access (unset HF_HUB_OFFLINE)"
        ),
        "{msg}"
    );
    assert!(hub.log().is_empty());
}

#[test]
fn an_unreachable_endpoint_stops_the_run() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = tempfile::tempdir().unwrap();
    let opts = FetchOptions {
        hub: HubSettings {
            endpoint: format!("http://127.0.0.1:{port}"),
            cache_dir: cache.path().to_path_buf(),
            token: None,
            offline: false,
        },
        retries: 1,
        retry_wait: Duration::ZERO,
    };
    let manifest = Manifest::embedded().unwrap();
    let report = fetch(&manifest, &["wan_vae", "turbo_vae"], &opts, &mut ()).unwrap();
    let msg = failure(&report).to_string();
    assert!(
        msg.starts_with(
            "could not download Wan-AI/Wan2.2-TI2V-5B/Wan2.2_VAE.pth from http://127.0.0.1:"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("check the network (or point HF_ENDPOINT to a reachable mirror)"),
        "{msg}"
    );
    assert_eq!(report.not_attempted().collect::<Vec<_>>(), ["turbo_vae"]);
}

#[test]
fn unknown_component_is_an_error_before_any_request() {
    let manifest = Manifest::embedded().unwrap();
    let hub = FakeHub::start(HashMap::new());
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(
        &manifest,
        &["distil"],
        &options(&hub, cache.path(), None),
        &mut (),
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "unknown component `distil`: weights.toml defines 1080p_sr, 540p_sr, base"
        ),
        "{err}"
    );
    assert!(hub.log().is_empty());
}
