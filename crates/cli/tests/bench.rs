//! `cadence bench` end to end on the demo model: the report files, every stage of the warm and
//! cold runs, the GEMM peak, and the flags saying the weights were random. Timings are not
//! asserted (only that they are there); the real sizes refuse to run on a CPU.

mod support;

use serde_json::Value;
use support::{cadence, files_under, run};

const STAGES: [&str; 5] = [
    "encode_text",
    "denoise_base",
    "decode_video",
    "decode_audio",
    "mux",
];

fn stage_names(phase: &Value) -> Vec<&str> {
    phase["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect()
}

fn is_seconds(v: &Value) -> bool {
    v.as_f64().is_some_and(|s| s.is_finite() && s >= 0.0)
}

#[test]
fn the_demo_benchmark_writes_json_and_markdown() {
    let home = tempfile::tempdir().unwrap();
    let r = run(
        cadence(home.path()),
        &[
            "bench",
            "--demo",
            "--runs",
            "2",
            "--resolution",
            "256p",
            "--model",
            "distilled",
            "--seconds",
            "1",
            "--out",
            "report",
        ],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let dir = home.path().join("report");
    assert_eq!(files_under(&dir), ["bench.json", "bench.md"]);

    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bench.json")).unwrap()).unwrap();
    assert_eq!(json["demo"], true);
    assert_eq!(json["random_weights"], true);
    assert!(json["note"].as_str().unwrap().contains("demo"));
    assert_eq!(
        (json["runs"].as_u64(), json["cold_runs"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(json["gemm_peak"]["tflops"].as_f64().unwrap() > 0.0);
    assert_eq!(json["memory"]["available"], false);
    assert!(json["memory"]["reason"].as_str().is_some());

    let scenarios = json["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 1);
    let s = &scenarios[0];
    assert_eq!(
        (
            s["resolution"].as_str(),
            s["model"].as_str(),
            s["weights"].as_str()
        ),
        (Some("256p"), Some("distilled"), Some("demo"))
    );
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(448), Some(256))
    );
    // Cold runs start with building the models; warm runs reuse them.
    let mut cold_stages = vec!["load_models"];
    cold_stages.extend(STAGES);
    assert_eq!(stage_names(&s["cold"]), cold_stages);
    assert_eq!(stage_names(&s["warm"]), STAGES);
    assert_eq!(s["cold"]["runs"], 1);
    assert_eq!(s["warm"]["runs"], 2);
    for phase in [&s["cold"], &s["warm"]] {
        assert!(is_seconds(&phase["total_seconds"]["median"]));
        for stage in phase["stages"].as_array().unwrap() {
            assert!(is_seconds(&stage["seconds"]["median"]), "{stage}");
            assert_eq!(
                stage["seconds"]["samples"].as_array().unwrap().len() as u64,
                phase["runs"].as_u64().unwrap(),
                "{stage}"
            );
        }
    }
    let denoise = &s["warm"]["stages"][1];
    assert_eq!(denoise["steps"], 8);
    assert!(is_seconds(&denoise["step_seconds"]["median"]));
    assert!(denoise["tflops"].as_f64().unwrap() > 0.0);
    assert!(denoise["fraction_of_gemm_peak"].as_f64().unwrap() > 0.0);

    let md = std::fs::read_to_string(dir.join("bench.md")).unwrap();
    assert!(md.starts_with("# Cadence benchmark"), "{md}");
    assert!(md.contains("demo model"), "{md}");
    assert!(md.contains("## 256p distilled"), "{md}");
    for label in [
        "load models",
        "encode text",
        "denoise (base)",
        "decode video",
        "decode audio",
        "mux",
        "**per clip**",
    ] {
        assert!(
            md.contains(&format!("| {label} |")),
            "no {label} row:\n{md}"
        );
    }
    // The same table went to stdout.
    assert!(r.stdout.contains("## 256p distilled"), "{r:?}");
}

#[test]
fn real_sizes_refuse_to_run_on_the_cpu() {
    let home = tempfile::tempdir().unwrap();
    let r = run(
        cadence(home.path()),
        &[
            "bench",
            "--device",
            "cpu",
            "--resolution",
            "256p",
            "--out",
            "report",
        ],
    );
    assert_eq!(r.code, Some(5), "{r:?}");
    let line = r.error_line();
    assert!(
        line.contains("need a GPU") && line.contains("--allow-cpu") && line.contains("--demo"),
        "{line}"
    );
}

#[test]
fn an_unwritable_out_folder_fails_before_any_run() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("file"), b"x").unwrap();
    let r = run(
        cadence(home.path()),
        &[
            "bench",
            "--demo",
            "--resolution",
            "256p",
            "--model",
            "distilled",
            "--out",
            "file/sub",
        ],
    );
    assert_eq!(r.code, Some(4), "{r:?}");
    assert!(r.error_line().contains("--out"), "{}", r.error_line());
    assert!(!r.stderr.contains("cold run"), "{}", r.stderr);
}
