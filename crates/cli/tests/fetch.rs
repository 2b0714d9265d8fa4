//! `cadence fetch` and `cadence check` against the weights crate's local stand-in for the Hub
//! (shared, not copied: the same fake serves both crates' tests).

mod support;

#[path = "../../weights/tests/support/mod.rs"]
mod hub;

use std::path::Path;
use std::process::Command;

use hub::{real_layout_repos, FakeHub, TOKEN};
use support::{cadence, run};

/// `cadence` talking to `hub`, online.
fn online(home: &Path, hub: &FakeHub) -> Command {
    let mut cmd = cadence(home);
    cmd.env_remove("HF_HUB_OFFLINE")
        .env("HF_ENDPOINT", hub.endpoint());
    cmd
}

#[test]
fn fetch_downloads_the_default_mode_then_finds_it_cached() {
    let home = tempfile::tempdir().unwrap();
    let hub = FakeHub::start(real_layout_repos());
    let r = run(online(home.path(), &hub), &["fetch", "--token", TOKEN]);
    assert_eq!(r.code, Some(0), "{r:?}");
    // Not a terminal: one log line per file instead of bars.
    for f in [
        "downloaded GAIR/daVinci-MagiHuman/distill/model-00002-of-00002.safetensors",
        "downloaded google/t5gemma-9b-9b-ul2/model-00001-of-00002.safetensors",
        "downloaded stabilityai/stable-audio-open-1.0/model.safetensors",
        "not in the repository (optional): google/t5gemma-9b-9b-ul2/special_tokens_map.json",
        "done: every file is in place",
    ] {
        assert!(r.stderr.contains(f), "{f}: {}", r.stderr);
    }
    assert!(
        !r.stderr.contains("Wan2.2"),
        "the default mode needs no Wan VAE"
    );

    // Second run: nothing downloaded; the token now comes from HF_TOKEN.
    let mut cmd = online(home.path(), &hub);
    cmd.env("HF_TOKEN", TOKEN);
    let r = run(cmd, &["fetch"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr
            .contains("already cached: GAIR/daVinci-MagiHuman/distill/"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("downloaded "), "{r:?}");

    // Offline, everything resolves from the cache.
    let r = run(cadence(home.path()), &["fetch", "--offline"]);
    assert_eq!(r.code, Some(0), "{r:?}");

    // `check` finds every file in the cache; the fake DiT's tensors are not the model's.
    let r = run(cadence(home.path()), &["check"]);
    assert_eq!(r.code, Some(3), "{r:?}");
    for id in ["t5gemma", "turbo_vae", "stable_audio"] {
        let line = r.stdout.lines().find(|l| l.starts_with(id)).unwrap();
        assert!(line.contains("Hugging Face cache"), "{line}");
    }
    let distill = r.stdout.lines().find(|l| l.starts_with("distill")).unwrap();
    assert!(distill.contains("INCOMPLETE"), "{distill}");
    assert!(
        r.stdout.contains("tensors: missing: adapter."),
        "{}",
        r.stdout
    );
}

#[test]
fn fetch_of_a_gated_model_without_a_token_says_how_to_get_access() {
    let home = tempfile::tempdir().unwrap();
    let hub = FakeHub::start(real_layout_repos());
    let r = run(
        online(home.path(), &hub),
        &["fetch", "--component", "t5gemma"],
    );
    assert_eq!(r.code, Some(6), "{r:?}");
    let e = r.error_line();
    assert!(e.contains("google/t5gemma-9b-9b-ul2 is gated"), "{e}");
    assert!(e.contains("HF_TOKEN"), "{e}");

    let r = run(
        online(home.path(), &hub),
        &[
            "fetch",
            "--component",
            "stable_audio",
            "--token",
            "hf_wrong",
        ],
    );
    assert_eq!(r.code, Some(6), "{r:?}");
    assert!(r.error_line().contains("the command line"), "{r:?}");
}

#[test]
fn fetch_selects_by_mode_flags_and_ids() {
    let home = tempfile::tempdir().unwrap();
    let hub = FakeHub::start(real_layout_repos());
    let r = run(
        online(home.path(), &hub),
        &[
            "fetch",
            "--component",
            "wan_vae",
            "--component",
            "turbo_vae",
        ],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr
            .contains("downloaded Wan-AI/Wan2.2-TI2V-5B/Wan2.2_VAE.pth"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("t5gemma"), "{r:?}");
    // --model base needs the base DiT, which this hub does not have.
    let r = run(
        online(home.path(), &hub),
        &["fetch", "--model", "base", "--token", TOKEN],
    );
    assert_eq!(r.code, Some(6), "{r:?}");
    assert!(r.error_line().contains("base/model.safetensors"), "{r:?}");
}

#[test]
fn fetch_offline_with_an_empty_cache_names_what_is_missing() {
    let home = tempfile::tempdir().unwrap();
    let r = run(
        cadence(home.path()),
        &["fetch", "--offline", "--component", "turbo_vae"],
    );
    assert_eq!(r.code, Some(3), "{r:?}");
    let e = r.error_line();
    assert!(e.contains("2 files could not be fetched"), "{e}");
    assert!(e.contains("offline mode is on"), "{e}");
}
