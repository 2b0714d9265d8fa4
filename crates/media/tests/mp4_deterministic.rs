//! The same frames and samples give the same media data, whatever the number of encoder
//! threads and however their timing falls: the audio/video interleaving of the file depends
//! only on the input.

use cadence_media::{AudioParams, Mp4Writer, VideoParams};

const W: usize = 64;
const H: usize = 48;
const FPS: u32 = 25;

/// Writes a 3 s clip, pushing video and audio in alternating pieces as the pipeline does.
fn write(path: &std::path::Path, threads: usize) -> Vec<u8> {
    let video = VideoParams {
        threads,
        ..VideoParams::new(W as u32, H as u32, FPS)
    };
    let mut writer = Mp4Writer::create(path, video, AudioParams::default()).unwrap();
    let frames = 3 * FPS as usize;
    for chunk in 0..frames / 5 {
        let rgb: Vec<u8> = (0..5 * W * H * 3)
            .map(|i| ((i * 7 + chunk * 31) % 251) as u8)
            .collect();
        writer.push_frames(&rgb).unwrap();
        let audio: Vec<f32> = (0..2 * 44_100 / 5)
            .map(|i| ((i + chunk * 1000) as f32 * 0.01).sin() * 0.2)
            .collect();
        writer.push_audio(&audio).unwrap();
    }
    writer.finish().unwrap();
    let bytes = std::fs::read(path).unwrap();
    let at = bytes.windows(4).position(|w| w == b"mdat").unwrap();
    bytes[at..].to_vec()
}

#[test]
fn media_data_is_identical_for_any_thread_count_and_timing() {
    let dir = tempfile::tempdir().unwrap();
    let reference = write(&dir.path().join("one.mp4"), 1);
    for (i, threads) in [2, 3, 4, 4, 8].into_iter().enumerate() {
        let got = write(&dir.path().join(format!("{i}.mp4")), threads);
        assert!(
            got == reference,
            "{threads} threads (run {i}) wrote other media data"
        );
    }
}
