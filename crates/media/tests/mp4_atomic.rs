//! A failed or interrupted write leaves no `.mp4` (and no temporary file) behind.

mod common;

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
    assert_eq!(
        dir_entries(dir.path()).len(),
        1,
        "only the scratch media file exists"
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
