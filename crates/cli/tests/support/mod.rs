//! Runs the built `cadence` binary in an environment isolated from the machine's Hugging Face
//! settings, and captures what it printed.

#![allow(dead_code)] // each test file uses a different part

use std::path::Path;
use std::process::Command;

/// What a run of the binary left: exit code and both streams.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The single `error: ...` line the binary printed last.
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("no error line in stderr:\n{}", self.stderr))
    }
}

/// `cadence` with an empty Hugging Face cache in `home`, no token, offline, no
/// CADENCE_WEIGHTS_DIR, run in `home`.
pub fn cadence(home: &Path) -> Command {
    let cache = home.join("hf-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cadence"));
    cmd.current_dir(home)
        .env("HF_HOME", home.join("hf-home"))
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN")
        .env_remove("HF_ENDPOINT")
        .env_remove("CADENCE_WEIGHTS_DIR")
        // Pins the MP4 headers' creation time, so equal clips are equal files.
        .env("SOURCE_DATE_EPOCH", "0");
    cmd
}

/// Runs `cmd` with `args` and captures its outcome.
pub fn run(mut cmd: Command, args: &[&str]) -> Run {
    let out = cmd.args(args).output().expect("the cadence binary runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every file under `dir`, relative, sorted (to show nothing was left behind).
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}
