//! Hard limits (issue: every bad input refused before work, nothing left behind) and the
//! memory placements of `cadence generate`: each case is one that used to crash, run away or
//! pass silently.

mod support;

use std::time::{Duration, Instant};

use support::{cadence, files_under, run, Run};

/// Runs `args` in a fresh folder (with `setup` files written first) and checks the refusal:
/// exit code, one `error:` line with `fragments`, within `limit`, and no file left behind
/// (hidden ones included).
fn refused(setup: &[(&str, Vec<u8>)], args: &[&str], code: i32, fragments: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    for (name, bytes) in setup {
        std::fs::write(home.path().join(name), bytes).unwrap();
    }
    let before = files_under(home.path());
    let start = Instant::now();
    let r = run(cadence(home.path()), args);
    let took = start.elapsed();
    assert_eq!(r.code, Some(code), "{args:?}: {r:?}");
    assert!(took < Duration::from_secs(20), "{args:?} took {took:?}");
    let error = r.error_line();
    for f in fragments {
        assert!(error.contains(f), "{args:?}: {error:?} lacks {f:?}");
    }
    assert!(!r.stderr.contains("panicked") && !r.stderr.contains("memory allocation"));
    let after = files_under(home.path());
    assert_eq!(after, before, "{args:?} left files behind");
    r
}

#[test]
fn oversized_prompts_are_refused_before_any_work() {
    // A 200 KB prompt file aborted with a 41 GB allocation; a 120 KB argument ran into the
    // kernel's OOM killer.
    refused(
        &[("long.txt", vec![b'a'; 200_000])],
        &[
            "generate",
            "--demo",
            "--prompt-file",
            "long.txt",
            "-o",
            "c.mp4",
        ],
        4,
        &["long.txt", "over the limit of 16384 bytes", "shorten"],
    );
    let long = "word ".repeat(24_000);
    refused(
        &[],
        &["generate", "--demo", &long, "-o", "c.mp4"],
        4,
        &["120000 bytes", "16384", "2048 tokens", "640"],
    );
    // Under the byte limit but over the token limit (the demo tokenizes a byte per token).
    let tokens = "ab".repeat(1_100);
    refused(
        &[],
        &["generate", "--demo", &tokens, "-o", "c.mp4"],
        4,
        &["2200 tokens", "limit of 2048", "shorten"],
    );
}

#[test]
fn sizes_beyond_the_models_are_refused() {
    for (w, h) in [("100000", "100000"), ("4096", "4096"), ("32768", "32768")] {
        refused(
            &[],
            &[
                "generate", "--demo", "p", "--width", w, "--height", h, "-o", "c.mp4",
            ],
            4,
            &[&format!("{w}x{h}"), "1920", "smaller size"],
        );
    }
}

#[test]
fn a_clip_over_the_memory_budget_is_refused_before_loading() {
    refused(
        &[],
        &[
            "generate",
            "--demo",
            "p",
            "--max-memory",
            "10MB",
            "-o",
            "c.mp4",
        ],
        4,
        &["needs at least", "0.0 GB", "budget"],
    );
}

#[test]
fn fractional_seconds_say_whole_seconds() {
    let home = tempfile::tempdir().unwrap();
    let r = run(
        cadence(home.path()),
        &["generate", "--demo", "p", "--seconds", "2.5"],
    );
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("whole number of seconds"), "{r:?}");
    let help = run(cadence(home.path()), &["generate", "--help"]);
    assert!(help.stdout.contains("whole seconds"), "{}", help.stdout);
}

#[test]
fn the_demo_without_a_prompt_says_which_it_uses() {
    let home = tempfile::tempdir().unwrap();
    let r = run(
        cadence(home.path()),
        &[
            "generate",
            "--demo",
            "--seconds",
            "1",
            "--width",
            "64",
            "--height",
            "64",
            "-o",
            "c.mp4",
        ],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr.contains("notice: no prompt given: the demo uses"),
        "{r:?}"
    );
}

/// The demo clip with `--offload` `mode`.
fn offloaded(home: &std::path::Path, mode: &str) -> (Vec<u8>, serde_json::Value) {
    let out = format!("{mode}.mp4");
    let r = run(
        cadence(home),
        &[
            "generate",
            "--demo",
            "a lighthouse",
            "--model",
            "base",
            "--steps",
            "2",
            "--resolution",
            "540p",
            "--width",
            "128",
            "--height",
            "96",
            "--seconds",
            "1",
            "--seed",
            "9",
            "--offload",
            mode,
            "--json",
            "-o",
            &out,
        ],
    );
    assert_eq!(r.code, Some(0), "{mode}: {r:?}");
    let json = serde_json::from_str(&r.stdout).unwrap();
    (std::fs::read(home.join(out)).unwrap(), json)
}

#[test]
fn every_offload_writes_the_same_file() {
    let home = tempfile::tempdir().unwrap();
    let (none, json) = offloaded(home.path(), "none");
    assert_eq!(json["memory"]["dits"], "resident");
    for (mode, placement) in [("swap", "visiting"), ("stream", "streamed")] {
        let (file, json) = offloaded(home.path(), mode);
        assert_eq!(json["memory"]["dits"], placement, "{json}");
        assert_eq!(json["memory"]["text_encoder"], placement, "{json}");
        assert!(file == none, "--offload {mode} changed the file");
    }
}
