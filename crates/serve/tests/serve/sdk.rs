//! The official `openai` Python package drives the server unchanged (sdk_client.py).

use std::process::Command;

use crate::support::{png, runs, tool, Server};

#[test]
fn the_openai_python_package_creates_downloads_lists_and_deletes() {
    if !tool(
        "the openai Python package (pip install openai) and ffprobe",
        runs("python3", &["-c", "import openai"]) && runs("ffprobe", &["-version"]),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--api-key", "sk-sdk"]);
    let frame = dir.path().join("frame.png");
    std::fs::write(&frame, png(96, 72)).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/serve/sdk_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(server.url(""))
        .arg("sk-sdk")
        .arg(dir.path())
        .arg(&frame)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the SDK script failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    for check in [
        "create_and_poll",
        "download_content ['aac', 'h264']",
        "thumbnail",
        "retrieve",
        "input_reference",
        "list",
        "delete",
        "not found 404",
        "authentication 401",
        "bad request 400",
    ] {
        assert!(stdout.contains(check), "{check} missing from:\n{stdout}");
    }
}
