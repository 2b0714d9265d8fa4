//! The same frames and samples give the same file, byte for byte, whatever the number of
//! encoder threads and however their timing falls, and whether it is written to a path or into
//! memory: the audio/video interleaving depends only on the input, and the header's creation
//! time comes from `$SOURCE_DATE_EPOCH`.

use cadence_media::{AudioParams, Mp4Writer, VideoParams};

const W: usize = 64;
const H: usize = 48;
const FPS: u32 = 25;

/// Writes a 3 s clip to `path`, or into memory when `path` is `None`, pushing video and audio in
/// alternating pieces as the pipeline does.
fn write(path: Option<&std::path::Path>, threads: usize) -> Vec<u8> {
    let video = VideoParams {
        threads,
        ..VideoParams::new(W as u32, H as u32, FPS)
    };
    let mut writer = match path {
        Some(p) => Mp4Writer::create(p, video, AudioParams::default()).unwrap(),
        None => Mp4Writer::new(video, AudioParams::default()).unwrap(),
    };
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
    match path {
        Some(p) => {
            let summary = writer.finish().unwrap();
            assert_eq!(summary.path.as_deref(), Some(p));
            std::fs::read(p).unwrap()
        }
        None => {
            let mut memory = std::io::Cursor::new(Vec::new());
            let summary = writer.finish_into(&mut memory).unwrap();
            assert_eq!(summary.path, None);
            assert_eq!(summary.bytes, memory.get_ref().len() as u64);
            memory.into_inner()
        }
    }
}

#[test]
fn file_is_identical_for_any_thread_count_and_timing() {
    // The only test in this binary, so no other thread reads the environment meanwhile.
    std::env::set_var("SOURCE_DATE_EPOCH", "1700000000");
    let dir = tempfile::tempdir().unwrap();
    let reference = write(Some(&dir.path().join("one.mp4")), 1);
    // mvhd/tkhd/mdhd carry it as 32-bit seconds since 1904.
    let stamp = (1_700_000_000u32 + 2_082_844_800).to_be_bytes();
    let stamped = reference.windows(4).filter(|w| *w == stamp).count();
    assert!(
        stamped >= 5,
        "creation time found {stamped} times, want mvhd + 2 tkhd + 2 mdhd"
    );
    for (i, threads) in [2, 3, 4, 4, 8].into_iter().enumerate() {
        let got = write(Some(&dir.path().join(format!("{i}.mp4"))), threads);
        assert!(
            got == reference,
            "{threads} threads (run {i}) wrote another file"
        );
    }
    for threads in [1, 3] {
        let got = write(None, threads);
        assert!(
            got == reference,
            "{threads} threads into memory wrote other bytes than into a file"
        );
    }
}
