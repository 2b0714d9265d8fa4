//! Signals during a run: SIGTERM and SIGINT are handled alike, a second one quits at once, and
//! neither leaves any file behind (hidden ones included); a signal during the video decode stops
//! it promptly.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{cadence, files_under};

/// A demo run writing `out/clip.mp4` with stderr read line by line on a thread.
fn start(home: &std::path::Path) -> (Child, mpsc::Receiver<String>) {
    std::fs::create_dir_all(home.join("out")).unwrap();
    let mut cmd = cadence(home);
    cmd.args([
        "generate",
        "--demo",
        "p",
        "--seconds",
        "8",
        "--width",
        "448",
        "--height",
        "256",
        "-o",
        "out/clip.mp4",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits until a stderr line contains `what`; returns every line so far.
fn wait_for(rx: &mpsc::Receiver<String>, what: &str, lines: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !lines.iter().any(|l| l.contains(what)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("no {what:?} in stderr:\n{}", lines.join("\n")),
        }
    }
}

fn signal(child: &Child, name: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

/// Waits for the exit; returns its code and the rest of stderr.
fn finish(mut child: Child, rx: mpsc::Receiver<String>, mut lines: Vec<String>) -> (i32, String) {
    let status = child.wait().unwrap();
    lines.extend(rx.iter());
    (status.code().unwrap_or(-1), lines.join("\n"))
}

#[test]
fn sigint_and_sigterm_while_decoding_stop_promptly_and_leave_nothing() {
    for name in ["INT", "TERM"] {
        let home = tempfile::tempdir().unwrap();
        let (child, rx) = start(home.path());
        let mut lines = Vec::new();
        wait_for(&rx, "decode video", &mut lines);
        std::thread::sleep(Duration::from_millis(300));
        let sent = Instant::now();
        signal(&child, name);
        let (code, stderr) = finish(child, rx, lines);
        let latency = sent.elapsed();
        println!("stopped {latency:?} after SIG{name} during the video decode");
        assert_eq!(code, 130, "SIG{name}: {stderr}");
        assert!(stderr.contains("error: interrupted"), "SIG{name}: {stderr}");
        // One second is the goal (measured in the test's output); the bound leaves room for
        // a loaded 2-core CI machine.
        assert!(latency < Duration::from_secs(3), "SIG{name}: {latency:?}");
        assert_eq!(files_under(&home.path().join("out")), Vec::<String>::new());
    }
}

#[test]
fn a_second_signal_quits_at_once_and_still_leaves_nothing() {
    let home = tempfile::tempdir().unwrap();
    let (child, rx) = start(home.path());
    let mut lines = Vec::new();
    wait_for(&rx, "decode video", &mut lines);
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(20));
    signal(&child, "INT");
    let (code, stderr) = finish(child, rx, lines);
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(files_under(&home.path().join("out")), Vec::<String>::new());
}
