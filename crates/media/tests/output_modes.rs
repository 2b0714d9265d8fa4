//! Every file the crate writes (MP4, WAV, PNG) gets mode 0666 less the umask, as files made by
//! other tools do: 0644 under umask 022, 0600 under umask 077 (tempfile's own default, 0600
//! whatever the umask, is not used).
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use cadence_media::{write_png, write_wav, AudioParams, Mp4Writer, VideoParams, WavFormat};
use common::synthetic_frame;

/// Set in the child process: the folder to write into.
const CHILD_DIR: &str = "CADENCE_MEDIA_MODES_DIR";

const FILES: [&str; 3] = ["clip.mp4", "sound.wav", "frame.png"];

fn write_every_kind(dir: &Path) {
    let video = VideoParams::new(32, 32, 25);
    let mut w = Mp4Writer::create(&dir.join(FILES[0]), video, AudioParams::default()).unwrap();
    w.push_frames(&synthetic_frame(32, 32, 0, false)).unwrap();
    w.finish().unwrap();
    write_wav(
        &dir.join(FILES[1]),
        &[0.1; 200],
        2,
        44_100,
        WavFormat::Pcm16,
    )
    .unwrap();
    write_png(&dir.join(FILES[2]), &[7; 32 * 32 * 3], 32, 32).unwrap();
}

/// Writes the files in a child process started under `umask` (the umask is process-wide, so
/// the test's own threads must not share it) and returns their permission bits.
fn modes_under(umask: &str) -> Vec<u32> {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("sh")
        .args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\"")])
        .arg(std::env::current_exe().unwrap())
        .args(["outputs_honour_the_umask", "--exact"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the child under umask {umask} failed");
    FILES
        .iter()
        .map(|f| {
            std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        })
        .collect()
}

#[test]
fn outputs_honour_the_umask() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        write_every_kind(Path::new(&dir));
        return;
    }
    assert_eq!(modes_under("022"), vec![0o644; 3], "{FILES:?}");
    assert_eq!(modes_under("077"), vec![0o600; 3], "{FILES:?}");
    assert_eq!(modes_under("002"), vec![0o664; 3], "{FILES:?}");
}
