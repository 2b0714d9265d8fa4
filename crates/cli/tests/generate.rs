//! `cadence generate` end to end on the embedded demo model, and every kind of bad input:
//! exit code, the one-line message, and no file left in the output folder.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::{cadence, files_under, run, Run};

/// The MP4 boxes and codec tags a playable H.264 + AAC file carries.
fn assert_mp4_with_audio(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[4..8], b"ftyp", "not an MP4");
    for tag in [&b"moov"[..], b"vide", b"soun", b"avc1", b"mp4a", b"mdat"] {
        assert!(
            bytes.windows(4).any(|w| w == tag),
            "{} lacks {}",
            path.display(),
            String::from_utf8_lossy(tag)
        );
    }
}

#[test]
fn the_demo_writes_an_mp4_with_audio_and_a_json_summary() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let r = run(
        cadence(home.path()),
        &[
            "generate",
            "--demo",
            "a test prompt",
            "-o",
            "out/demo.mp4",
            "--seconds",
            "1",
            "--seed",
            "3",
            "--json",
        ],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        !r.stderr.contains("[OpenH264]"),
        "the encoder's own log reached the terminal:\n{}",
        r.stderr
    );
    let json: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert_eq!(json["demo"], true);
    assert_eq!(json["seed"], 3);
    assert_eq!(json["steps"], 8);
    assert_eq!(
        (json["width"].as_u64(), json["height"].as_u64()),
        (Some(448), Some(256))
    );
    assert_eq!(json["frames"], 25);
    assert_eq!(json["output"], "out/demo.mp4");
    let stages: Vec<&str> = json["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "load_models",
            "encode_text",
            "denoise_base",
            "decode_video",
            "decode_audio",
            "mux"
        ]
    );
    assert!(json["timings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["seconds"].as_f64().is_some_and(|s| s >= 0.0)));
    assert_eq!(files_under(&out), ["demo.mp4"], "only the clip is left");
    assert_eq!(
        json["bytes"].as_u64(),
        Some(std::fs::metadata(out.join("demo.mp4")).unwrap().len())
    );
    assert_mp4_with_audio(&out.join("demo.mp4"));
}

#[test]
fn fp8_weights_run_end_to_end_and_change_the_clip() {
    let home = tempfile::tempdir().unwrap();
    let clip = |precision: &str| {
        let name = format!("{precision}.mp4");
        let r = run(
            cadence(home.path()),
            &[
                "generate",
                "--demo",
                "a test prompt",
                "-o",
                &name,
                "--seconds",
                "1",
                "--seed",
                "5",
                "--json",
                "--precision",
                precision,
            ],
        );
        assert_eq!(r.code, Some(0), "{r:?}");
        let json: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
        assert_eq!(json["precision"], precision);
        let path = home.path().join(&name);
        assert_mp4_with_audio(&path);
        std::fs::read(&path).unwrap()
    };
    // The quantised GEMMs move the sampled latents, so the frames change.
    assert!(
        clip("bf16") != clip("fp8"),
        "--precision fp8 changed nothing"
    );
}

#[test]
fn without_weights_the_demo_runs_with_a_notice_and_the_default_name() {
    let home = tempfile::tempdir().unwrap();
    let r = run(
        cadence(home.path()),
        &[
            "generate",
            "a cat",
            "--seconds",
            "1",
            "--width",
            "64",
            "--height",
            "64",
            "--seed",
            "5",
        ],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let notice = r
        .stderr
        .lines()
        .find(|l| l.starts_with("notice:"))
        .unwrap_or_else(|| panic!("no notice: {r:?}"));
    assert!(notice.contains("demo model"), "{notice}");
    assert!(notice.contains("`cadence fetch`"), "{notice}");
    assert!(
        r.stdout.starts_with("wrote cadence-5.mp4 (64x64"),
        "{}",
        r.stdout
    );
    assert_mp4_with_audio(&home.path().join("cadence-5.mp4"));
}

#[test]
fn the_same_seed_gives_the_same_file() {
    let home = tempfile::tempdir().unwrap();
    let args = |o: &'static str| {
        [
            "generate",
            "--demo",
            "x",
            "--seconds",
            "1",
            "--width",
            "64",
            "--height",
            "64",
            "--seed",
            "9",
            "-q",
            "-o",
            o,
        ]
    };
    assert_eq!(run(cadence(home.path()), &args("a.mp4")).code, Some(0));
    assert_eq!(run(cadence(home.path()), &args("b.mp4")).code, Some(0));
    // Byte for byte: support::cadence pins the header's creation time (SOURCE_DATE_EPOCH).
    let file = |name: &str| std::fs::read(home.path().join(name)).unwrap();
    assert!(
        file("a.mp4") == file("b.mp4"),
        "two runs with seed 9 differ"
    );
}

/// Runs a failing `generate` in a fresh folder: the exit code, a message containing every
/// fragment, a single error line, and nothing written.
fn fails(args: &[&str], code: i32, fragments: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let bad_audio = home.path().join("bad.wav");
    std::fs::write(&bad_audio, b"RIFF\x10\0\0\0WAVEjunkjunkjunk").unwrap();
    let gif = home.path().join("anim.png");
    std::fs::write(&gif, b"GIF89a\x01\0\x01\0\0\0\0;").unwrap();
    std::fs::write(home.path().join("empty.txt"), "  \n").unwrap();
    std::fs::write(home.path().join("latin1.txt"), b"caf\xe9 au lait").unwrap();
    let before = files_under(home.path());
    let r = run(cadence(home.path()), args);
    assert_eq!(r.code, Some(code), "{args:?}: {r:?}");
    let error = r.error_line();
    for f in fragments {
        assert!(error.contains(f), "{args:?}: {error:?} lacks {f:?}");
    }
    assert_eq!(
        r.stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{r:?}"
    );
    let after: Vec<String> = files_under(home.path())
        .into_iter()
        .filter(|f| !f.starts_with("hf-"))
        .collect();
    let before: Vec<String> = before
        .into_iter()
        .filter(|f| !f.starts_with("hf-"))
        .collect();
    assert_eq!(after, before, "{args:?} left files behind");
    r
}

#[test]
fn bad_inputs_fail_fast_with_one_sentence_and_no_output() {
    let g = |extra: &[&'static str]| {
        let mut a = vec!["generate", "--demo", "a prompt", "-o", "clip.mp4"];
        a.extend_from_slice(extra);
        a
    };
    fails(
        &g(&["--image", "nope.png"]),
        4,
        &["nope.png", "check the path"],
    );
    fails(
        &g(&["--image", "anim.png"]),
        4,
        &["anim.png", "not supported", "PNG, JPEG or WebP"],
    );
    fails(&g(&["--audio", "bad.wav"]), 4, &["bad.wav"]);
    fails(&g(&["--audio", "missing.flac"]), 4, &["missing.flac"]);
    fails(
        &g(&["--width", "100", "--height", "0"]),
        4,
        &["height 0 px is too small"],
    );
    fails(&g(&["--seconds", "0"]), 4, &["seconds = 0"]);
    fails(&g(&["--steps", "0"]), 4, &["steps must be at least 1"]);
    fails(
        &["generate", "--demo", "p", "-o", "no/such/dir/clip.mp4"],
        4,
        &["no/such/dir", "does not exist"],
    );
    fails(
        &["generate", "--demo", "--prompt-file", "empty.txt"],
        4,
        &["empty.txt", "is empty"],
    );
    fails(
        &["generate", "--demo", "--prompt-file", "latin1.txt"],
        4,
        &[
            "latin1.txt",
            "not UTF-8",
            "0xE9 at offset 3",
            "save it as UTF-8",
        ],
    );
    fails(
        &["generate", "--demo", "--prompt-file", "none.txt"],
        4,
        &["none.txt"],
    );
    fails(
        &["generate", "-o", "x.mp4"],
        2,
        &["no prompt", "--prompt-file"],
    );
}

#[test]
fn a_malformed_source_date_epoch_fails_before_generating() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = cadence(home.path());
    cmd.env("SOURCE_DATE_EPOCH", "last tuesday");
    let r = run(cmd, &["generate", "--demo", "p", "-o", "clip.mp4"]);
    assert_eq!(r.code, Some(4), "{r:?}");
    let error = r.error_line();
    assert!(
        error.contains("SOURCE_DATE_EPOCH") && error.contains("unset it"),
        "{error}"
    );
    assert!(!home.path().join("clip.mp4").exists());
}

#[cfg(unix)]
#[test]
fn a_prompt_that_is_not_utf8_names_the_byte_and_the_fix() {
    use std::os::unix::ffi::OsStrExt;
    let home = tempfile::tempdir().unwrap();
    let out = cadence(home.path())
        .args(["generate", "--demo", "-o", "clip.mp4"])
        .arg(std::ffi::OsStr::from_bytes(b"caf\xe9"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for f in [
        "the prompt is not UTF-8",
        "0xE9 at offset 3",
        "--prompt-file",
    ] {
        assert!(stderr.contains(f), "{stderr:?} lacks {f:?}");
    }
    assert!(!home.path().join("clip.mp4").exists());
}

#[test]
fn command_line_mistakes_exit_with_2() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["generate", "p", "--width", "512"][..],
        &["generate", "p", "--resolution", "720p"],
        &["generate", "p", "--model", "huge"],
        &["frobnicate"],
    ] {
        let r = run(cadence(home.path()), args);
        assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
        assert!(files_under(home.path())
            .iter()
            .all(|f| f.starts_with("hf-")));
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_cuda_build_names_the_flag() {
    fails(
        &["generate", "--demo", "p", "--device", "cuda"],
        5,
        &["built without CUDA", "--features cuda", "--device cpu"],
    );
}

#[test]
fn missing_weights_in_an_explicit_folder_do_not_fall_back_to_the_demo() {
    let home = tempfile::tempdir().unwrap();
    let weights = home.path().join("weights");
    std::fs::create_dir(&weights).unwrap();
    let w = weights.to_str().unwrap();
    let r = fails(
        &["generate", "p", "--weights-dir", w, "-o", "clip.mp4"],
        3,
        &["cadence fetch", "distill"],
    );
    assert!(!r.stderr.contains("notice:"), "{r:?}");
    // The flags of the mode are carried into the fix.
    fails(
        &[
            "generate",
            "p",
            "--weights-dir",
            w,
            "--model",
            "base",
            "--resolution",
            "540p",
        ],
        3,
        &["cadence fetch --model base --resolution 540p"],
    );
}

#[test]
fn help_teaches_with_examples_and_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    let r = run(cadence(home.path()), &["--help"]);
    assert_eq!(r.code, Some(0));
    for f in ["generate --demo", "Exit codes:", "130"] {
        assert!(r.stdout.contains(f), "{f}: {}", r.stdout);
    }
    let r = run(cadence(home.path()), &["generate", "--help"]);
    for f in [
        "--resolution",
        "256p",
        "1080p",
        "--prompt-file",
        "Examples:",
    ] {
        assert!(r.stdout.contains(f), "{f}: {}", r.stdout);
    }
    let r = run(cadence(home.path()), &["--version"]);
    assert_eq!(
        r.stdout.trim(),
        format!("cadence {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn ctrl_c_before_writing_exits_at_once() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = cadence(home.path());
    cmd.args([
        "generate",
        "--demo",
        "p",
        "--seconds",
        "12",
        "-o",
        "clip.mp4",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Long enough for the handler to be installed (the first thing `generate` does), far
    // shorter than denoising a 12 s clip.
    std::thread::sleep(Duration::from_millis(500));
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("no output was written"), "{stderr}");
    assert!(!home.path().join("clip.mp4").exists());
}
