//! A failed or interrupted write leaves no `.mp4` (and no temporary file) behind, even when the
//! process is killed outright.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use cadence_media::atomic_file::AtomicFile;
use cadence_media::{AudioParams, Mp4Writer, VideoParams};
use common::{dir_entries, synthetic_frame};

fn video() -> VideoParams {
    VideoParams {
        segment_frames: 4,
        threads: 2,
        ..VideoParams::new(64, 48, 25)
    }
}

#[test]
fn drop_without_finish_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let mut w = Mp4Writer::create(&path, video(), AudioParams::default()).unwrap();
    for i in 0..9 {
        w.push_frames(&synthetic_frame(64, 48, i, false)).unwrap();
    }
    w.push_audio(&vec![0.1; 2 * 4410]).unwrap();
    assert!(
        dir_entries(dir.path()).is_empty(),
        "the scratch media file has no name: {:?}",
        dir_entries(dir.path())
    );
    drop(w);
    assert!(
        dir_entries(dir.path()).is_empty(),
        "{:?}",
        dir_entries(dir.path())
    );
}

#[test]
fn error_mid_way_keeps_the_previous_file_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, b"previous good file").unwrap();
    let mut w = Mp4Writer::create(&path, video(), AudioParams::default()).unwrap();
    w.push_frames(&synthetic_frame(64, 48, 0, false)).unwrap();
    let err = w.push_audio(&[0.0, f32::NAN]).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");
    let err = w.finish().unwrap_err();
    assert!(err.to_string().contains("already failed"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"previous good file");
    assert_eq!(dir_entries(dir.path()), vec!["clip.mp4"]);
}

#[test]
fn finishing_without_frames_is_an_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.mp4");
    let w = Mp4Writer::create(&path, video(), AudioParams::default()).unwrap();
    let err = w.finish().unwrap_err();
    assert!(err.to_string().contains("no video frames"), "{err}");
    assert!(dir_entries(dir.path()).is_empty());
}

#[test]
fn successful_finish_replaces_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, b"old").unwrap();
    let mut w = Mp4Writer::create(&path, video(), AudioParams::default()).unwrap();
    w.push_frames(&synthetic_frame(64, 48, 0, false)).unwrap();
    // Until finish, the old file is still what readers see.
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    let s = w.finish().unwrap();
    assert_eq!(dir_entries(dir.path()), vec!["clip.mp4"]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), s.bytes);
}

/// Set in the child process of [`a_killed_process_leaves_nothing`]: the folder to write in.
const CHILD_DIR: &str = "CADENCE_MEDIA_KILLED_CHILD_DIR";

/// A process killed without running destructors (SIGKILL; a second Ctrl-C or SIGTERM that exits
/// at once) while an MP4 is being encoded and while an output file is being written leaves no
/// file, hidden ones included: both temporaries are unnamed.
#[test]
#[cfg(target_os = "linux")]
fn a_killed_process_leaves_nothing() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let dir = std::path::PathBuf::from(dir);
        let mut w =
            Mp4Writer::create(&dir.join("clip.mp4"), video(), AudioParams::default()).unwrap();
        for i in 0..9 {
            w.push_frames(&synthetic_frame(64, 48, i, false)).unwrap();
        }
        let mut out = AtomicFile::create(&dir.join("report.json")).unwrap();
        out.file().write_all(&[b'x'; 100_000]).unwrap();
        println!("ready");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(60));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["a_killed_process_leaves_nothing", "--exact", "--nocapture"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap().contains("ready")),
        "the child did not start writing"
    );
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert!(
        dir_entries(dir.path()).is_empty(),
        "left behind: {:?}",
        dir_entries(dir.path())
    );
}
