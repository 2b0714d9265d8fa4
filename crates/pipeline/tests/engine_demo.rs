//! End to end on the embedded tiny random models: every mode produces a clip of exactly the
//! expected shape, twice identically.

use std::path::Path;
use std::time::Instant;

use cadence_media::{write_png, write_wav, WavFormat};
use cadence_pipeline::engine::{
    CancelToken, Clip, Engine, EngineBuilder, GenerationReport, Mp4Sink,
};
use cadence_pipeline::{BaseModel, GenerationRequest, Mode, Resolution};

/// The demo engine for `mode`.
fn demo(mode: Mode) -> Engine {
    EngineBuilder::demo().mode(mode).build(&mut ()).unwrap()
}

/// Frames of an `s`-second clip: `25 s + 1` audio latents, `T = (A-1)/4 + 1` latent frames,
/// `4 (T-1) + 1` video frames.
fn expected_frames(seconds: u32) -> usize {
    let a = 25 * seconds as usize + 1;
    4 * ((a - 1) / 4) + 1
}

fn run(engine: &Engine, request: &GenerationRequest) -> (Clip, GenerationReport) {
    let start = Instant::now();
    let out = engine.generate_clip(request).unwrap();
    println!(
        "{:?}: {:.1} s",
        request.prompt,
        start.elapsed().as_secs_f64()
    );
    out
}

fn check_shape(clip: &Clip, report: &GenerationReport, width: u32, height: u32, seconds: u32) {
    let info = clip.info.expect("started");
    assert_eq!(info, report.info);
    assert_eq!((info.width, info.height, info.fps), (width, height, 25));
    assert_eq!(info.frames, expected_frames(seconds));
    assert_eq!(
        clip.frames.len(),
        info.frames * (width * height * 3) as usize
    );
    // Audio: stereo at 44.1 kHz, ending with the last frame.
    assert_eq!(clip.audio.len(), 2 * info.frames * 44_100 / 25);
    assert!(clip.audio.iter().all(|s| s.is_finite() && s.abs() <= 1.0));
}

#[test]
fn text_to_video_distilled_is_deterministic() {
    let engine = demo(Mode::distilled_t2v());
    let mut request = GenerationRequest::new("a cat plays the piano");
    (request.width, request.height, request.seconds, request.seed) = (128, 96, 1, 7);
    let (a, report) = run(&engine, &request);
    check_shape(&a, &report, 128, 96, 1);
    let (b, _) = run(&engine, &request);
    assert_eq!(a, b, "same seed, same clip");
    request.seed = 8;
    let (c, _) = run(&engine, &request);
    assert_ne!(a.frames, c.frames, "another seed, another clip");
}

/// A 160x120 gradient PNG.
fn reference_image(dir: &Path) -> std::path::PathBuf {
    let (w, h) = (160u32, 120u32);
    let rgb: Vec<u8> = (0..w * h)
        .flat_map(|i| [(i % w) as u8, (i / w) as u8, 128])
        .collect();
    let path = dir.join("face.png");
    write_png(&path, &rgb, w, h).unwrap();
    path
}

/// `seconds` of a 220 Hz tone with a click every 0.25 s, 48 kHz stereo WAV.
fn reference_audio(dir: &Path, seconds: f32) -> std::path::PathBuf {
    let rate = 48_000u32;
    let n = (seconds * rate as f32) as usize;
    let samples: Vec<f32> = (0..n)
        .flat_map(|i| {
            let t = i as f32 / rate as f32;
            let click = if i % (rate as usize / 4) < 48 {
                0.5
            } else {
                0.0
            };
            let v = 0.3 * (std::f32::consts::TAU * 220.0 * t).sin() + click;
            [v, v]
        })
        .collect();
    let path = dir.join("voice.wav");
    write_wav(&path, &samples, 2, rate, WavFormat::Float32).unwrap();
    path
}

#[test]
fn image_to_video_with_super_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo(Mode {
        image: true,
        resolution: Resolution::P540,
        ..Mode::distilled_t2v()
    });
    let mut request = GenerationRequest::new("a portrait comes to life");
    request.image = Some(reference_image(dir.path()).into());
    (request.width, request.height, request.seconds) = (64, 64, 1);
    (request.sr_width, request.sr_height) = (Some(128), Some(96));
    let (a, report) = run(&engine, &request);
    check_shape(&a, &report, 128, 96, 1);
    let stages: Vec<&str> = report.timings.iter().map(|(s, _)| s.key()).collect();
    assert_eq!(
        stages,
        [
            "encode_text",
            "encode_image",
            "denoise_base",
            "denoise_sr",
            "decode_video",
            "decode_audio"
        ]
    );
    assert_eq!(run(&engine, &request).0, a);
}

#[test]
fn audio_driven_keeps_the_users_sound() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo(Mode {
        dit: BaseModel::Base,
        reference_audio: true,
        ..Mode::distilled_t2v()
    });
    let mut request = GenerationRequest::new("she sings along");
    request.audio = Some(reference_audio(dir.path(), 1.5).into());
    (request.width, request.height, request.seconds) = (64, 64, 1);
    let (a, report) = run(&engine, &request);
    // The clip follows the encoded user audio: 1 s of it, 25 latents per second.
    let info = a.info.unwrap();
    assert_eq!((info.width, info.height), (64, 64));
    let latents = 25;
    assert_eq!(info.frames, 4 * ((latents - 1) / 4) + 1);
    // Its sound is the user's own waveform at 44.1 kHz, not a re-decoded copy.
    assert_eq!(a.audio.len(), 2 * latents * 44_100 / 25);
    // Away from the click edges (the first 1 ms holds a click), the left channel is the tone.
    let left: Vec<f32> = a.audio.iter().step_by(2).copied().collect();
    let tone = |i: usize| 0.3 * (std::f32::consts::TAU * 220.0 * i as f32 / 44_100.0).sin();
    for i in (5..35).chain(100..1000) {
        let want = tone(i) + if i < 44 { 0.5 } else { 0.0 };
        assert!(
            (left[i] - want).abs() < 0.05,
            "sample {i}: {} vs {want}",
            left[i]
        );
    }
    assert_eq!(
        report
            .timings
            .iter()
            .filter(|(s, _)| s.key() == "encode_audio")
            .count(),
        1
    );
    assert_eq!(run(&engine, &request).0, a);
}

#[test]
fn missing_components_are_named() {
    let engine = demo(Mode {
        image: true,
        ..Mode::distilled_t2v()
    });
    let mut request = GenerationRequest::new("x");
    (request.width, request.height, request.seconds) = (64, 64, 1);
    request.image = Some(std::path::PathBuf::from("/nonexistent/face.png").into());
    let err = engine.generate_clip(&request).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/face.png"), "{err}");
}

#[test]
fn in_memory_image_and_audio_make_the_clip_their_files_make() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo(Mode {
        image: true,
        reference_audio: true,
        ..Mode::distilled_t2v()
    });
    let (image, audio) = (
        reference_image(dir.path()),
        reference_audio(dir.path(), 1.2),
    );
    let mut from_files = GenerationRequest::new("she sings to the camera");
    (from_files.width, from_files.height, from_files.seconds) = (64, 64, 1);
    from_files.image = Some(image.clone().into());
    from_files.audio = Some(audio.clone().into());
    let mut from_bytes = from_files.clone();
    from_bytes.image = Some(std::fs::read(&image).unwrap().into());
    from_bytes.audio = Some(std::fs::read(&audio).unwrap().into());

    let (expected, _) = run(&engine, &from_files);
    // Bytes in, MP4 bytes out: nothing touches the disk.
    let mut sink = Mp4Sink::unnamed();
    engine
        .generate(&from_bytes, &mut sink, &mut (), &CancelToken::new())
        .unwrap();
    let mut mp4 = Vec::new();
    let (summary, _) = sink.finish_into(&mut mp4).unwrap();
    assert_eq!(&mp4[4..8], b"ftyp");
    assert_eq!(summary.frames, expected.info.unwrap().frames as u64);
    assert_eq!(
        run(&engine, &from_bytes).0,
        expected,
        "same clip from bytes"
    );
    // Undecodable bytes are refused before any work, naming them.
    let mut broken = from_bytes.clone();
    broken.image = Some(b"not an image".to_vec().into());
    let e = engine.generate_clip(&broken).unwrap_err().to_string();
    assert!(e.contains("in-memory bytes"), "{e}");
}
