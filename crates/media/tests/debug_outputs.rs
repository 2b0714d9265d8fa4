//! WAV and PNG debug writers round-trip their data.

mod common;

use cadence_media::{write_png_frames, write_wav, WavFormat};
use common::{dir_entries, ffprobe, synthetic_frame};

#[test]
fn wav_round_trips_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<f32> = (0..2000).map(|i| ((i as f32) * 0.01).sin() * 0.9).collect();
    for (name, format) in [
        ("a16.wav", WavFormat::Pcm16),
        ("af.wav", WavFormat::Float32),
    ] {
        let path = dir.path().join(name);
        write_wav(&path, &samples, 2, 44_100, format).unwrap();
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().channels, 2);
        assert_eq!(r.spec().sample_rate, 44_100);
        let back: Vec<f32> = match format {
            WavFormat::Pcm16 => r
                .samples::<i16>()
                .map(|s| f32::from(s.unwrap()) / 32767.0)
                .collect(),
            WavFormat::Float32 => r.samples::<f32>().map(|s| s.unwrap()).collect(),
        };
        let tol = if format == WavFormat::Pcm16 {
            1.0 / 32767.0
        } else {
            0.0
        };
        assert_eq!(back.len(), samples.len());
        assert!(back.iter().zip(&samples).all(|(a, b)| (a - b).abs() <= tol));
        let probe = ffprobe(&path, &[]);
        assert_eq!(probe["streams"][0]["sample_rate"], "44100");
    }
    assert!(write_wav(
        &dir.path().join("bad.wav"),
        &[0.0; 3],
        2,
        44_100,
        WavFormat::Pcm16
    )
    .is_err());
    assert_eq!(dir_entries(dir.path()), vec!["a16.wav", "af.wav"]);
}

#[test]
fn png_frames_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<u8> = (0..3)
        .flat_map(|i| synthetic_frame(40, 30, i, i == 2))
        .collect();
    let paths = write_png_frames(dir.path(), &frames, 40, 30, 7).unwrap();
    assert_eq!(
        dir_entries(dir.path()),
        vec!["frame_000007.png", "frame_000008.png", "frame_000009.png"]
    );
    for (i, p) in paths.iter().enumerate() {
        let img = image::open(p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (40, 30));
        assert_eq!(img.as_raw(), &synthetic_frame(40, 30, i, i == 2));
    }
    assert!(write_png_frames(dir.path(), &frames[1..], 40, 30, 0).is_err());
}
