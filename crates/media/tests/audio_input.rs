//! Reference audio: real files made by ffmpeg in every supported container decode to mono
//! 51.2 kHz with the clicks where they were put (M4A edit list honoured), and broken files fail
//! with a clear message.

mod common;

use std::path::{Path, PathBuf};

use cadence_media::{
    load_reference_audio, load_stereo_audio, write_wav, AudioInputOptions, DecodedAudio,
    MediaSource, WavFormat,
};
use common::{ffmpeg, onsets};

const CLICKS_S: [f64; 3] = [0.4, 1.0, 1.6];

/// A 2 s 44.1 kHz stereo WAV (float) with 5 ms clicks at [`CLICKS_S`].
fn source_wav(dir: &Path) -> PathBuf {
    let rate = 44_100usize;
    let starts: Vec<usize> = CLICKS_S
        .iter()
        .map(|s| (s * rate as f64) as usize)
        .collect();
    let audio = common::clicks(2 * rate, rate, &starts, 0.5);
    let path = dir.join("source.wav");
    write_wav(&path, &audio, 2, rate as u32, WavFormat::Float32).unwrap();
    path
}

fn convert(src: &Path, dst: &Path, args: &[&str]) -> PathBuf {
    let mut all = vec!["-i", src.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push(dst.to_str().unwrap());
    ffmpeg(&all);
    dst.to_path_buf()
}

fn err_of(path: &Path) -> String {
    load_reference_audio(path, &AudioInputOptions::default())
        .err()
        .unwrap_or_else(|| panic!("{} should have been rejected", path.display()))
        .to_string()
}

#[test]
fn every_format_decodes_to_mono_51200_with_clicks_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_wav(dir.path());
    let d = dir.path();
    let cases: Vec<(PathBuf, f64)> = vec![
        // (file, allowed click error in ms)
        (src.clone(), 0.1),
        (
            convert(
                &src,
                &d.join("s16_48k_mono.wav"),
                &["-ar", "48000", "-ac", "1", "-c:a", "pcm_s16le"],
            ),
            0.1,
        ),
        (convert(&src, &d.join("a.flac"), &["-c:a", "flac"]), 0.1),
        (
            convert(
                &src,
                &d.join("a.mp3"),
                &["-c:a", "libmp3lame", "-b:a", "192k"],
            ),
            1.0,
        ),
        (
            convert(&src, &d.join("a.m4a"), &["-c:a", "aac", "-b:a", "192k"]),
            1.0,
        ),
        (
            convert(&src, &d.join("a22k.m4a"), &["-ar", "22050", "-c:a", "aac"]),
            1.0,
        ),
        (convert(&src, &d.join("alac.m4a"), &["-c:a", "alac"]), 0.1),
    ];
    for (path, tol_ms) in cases {
        let a = load_reference_audio(&path, &AudioInputOptions::default()).unwrap();
        assert_eq!(a.sample_rate, 51_200);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // 2 s at 51.2 kHz; lossy codecs' gapless trimming may be off by a fraction of a frame.
        let expected = 2 * 51_200;
        assert!(
            (a.samples.len() as i64 - expected).abs() <= 64,
            "{name}: {} samples",
            a.samples.len()
        );
        let found = onsets(&a.samples, 0.2, 51_200 / 10);
        assert_eq!(found.len(), 3, "{name}: clicks at {found:?}");
        for (&got, want) in found.iter().zip(CLICKS_S) {
            let err_ms = (got as f64 / 51_200.0 - want).abs() * 1000.0;
            println!("{name}: click at {want} s off by {err_ms:.3} ms");
            assert!(
                err_ms <= tol_ms,
                "{name}: click at {want} s off by {err_ms} ms"
            );
        }
        // Stereo (L + R)·√½ as ffmpeg's -ac 1: 0.5 + 0.5 -> 0.707.
        let peak = a.samples.iter().fold(0f32, |m, v| m.max(v.abs()));
        let want_peak = if a.source_channels == 2 { 0.707 } else { 0.5 };
        assert!((peak - want_peak).abs() < 0.1, "{name}: peak {peak}");
    }
}

#[test]
fn broken_inputs_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = source_wav(d);

    let empty = d.join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    assert!(err_of(&empty).contains("empty (0 bytes)"));

    let junk = d.join("junk.mp3");
    std::fs::write(
        &junk,
        (0..5000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let e = err_of(&junk);
    assert!(e.contains("not a supported audio file"), "{e}");

    let text = d.join("notes.txt");
    std::fs::write(&text, "this is not audio\n".repeat(100)).unwrap();
    assert!(err_of(&text).contains("not a supported audio file"));

    // A WAV header with no samples.
    let no_samples = d.join("no_samples.wav");
    write_wav(&no_samples, &[], 2, 44_100, WavFormat::Pcm16).unwrap();
    let e = err_of(&no_samples);
    assert!(e.contains("empty") || e.contains("no audio samples"), "{e}");

    // An M4A cut in the middle of its media data.
    let m4a = convert(&src, &d.join("full.m4a"), &["-c:a", "aac"]);
    let bytes = std::fs::read(&m4a).unwrap();
    let cut = d.join("truncated.m4a");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let e = err_of(&cut);
    assert!(e.contains("corrupt"), "{e}");

    // A FLAC whose frames are overwritten with garbage (CRC and sync fail).
    let flac = convert(&src, &d.join("full.flac"), &["-c:a", "flac"]);
    let mut bytes = std::fs::read(&flac).unwrap();
    // Audio frames follow the metadata (and ffmpeg's 8 KiB padding block); each starts with
    // the frame sync code 0xFFF8. Damage the middle third of the frame data.
    let first_frame = bytes.windows(2).position(|w| w == [0xff, 0xf8]).unwrap();
    let third = (bytes.len() - first_frame) / 3;
    for b in &mut bytes[first_frame + third..first_frame + 2 * third] {
        *b = b.wrapping_mul(31).wrapping_add(17);
    }
    let bad_flac = d.join("damaged.flac");
    std::fs::write(&bad_flac, &bytes).unwrap();
    let e = err_of(&bad_flac);
    assert!(e.contains("corrupt"), "{e}");

    // Opus in Ogg: a real audio file in a codec the loader does not decode.
    let opus = convert(&src, &d.join("a.opus"), &["-c:a", "libopus"]);
    let e = err_of(&opus);
    assert!(e.contains("not supported"), "{e}");

    // Digital near-silence.
    let quiet = d.join("quiet.wav");
    write_wav(
        &quiet,
        &vec![1e-5; 2 * 44_100],
        2,
        44_100,
        WavFormat::Float32,
    )
    .unwrap();
    let e = err_of(&quiet);
    assert!(e.contains("silent"), "{e}");

    // 10 ms is shorter than one audio latent (40 ms).
    let short = d.join("short.wav");
    write_wav(&short, &vec![0.5; 2 * 441], 2, 44_100, WavFormat::Float32).unwrap();
    let e = err_of(&short);
    assert!(e.contains("too short"), "{e}");
}

/// Bytes in memory decode exactly like the same file, one decode gives both the model's input
/// and the clip's stereo track identical to the path functions, and samples a caller decoded
/// itself give the same result.
#[test]
fn bytes_and_samples_decode_like_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = source_wav(d);
    let files = [
        src.clone(),
        convert(&src, &d.join("a.flac"), &["-c:a", "flac"]),
        convert(&src, &d.join("a.mp3"), &["-c:a", "libmp3lame"]),
        convert(&src, &d.join("a.m4a"), &["-c:a", "aac"]),
        convert(&src, &d.join("m.wav"), &["-ac", "1", "-ar", "22050"]),
    ];
    let opts = AudioInputOptions::default();
    for path in files {
        let name = path.display().to_string();
        let from_file = DecodedAudio::decode(&MediaSource::from(path.as_path())).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let from_bytes = DecodedAudio::decode(&MediaSource::from(bytes)).unwrap();
        assert_eq!(from_bytes.samples(), from_file.samples(), "{name}");
        assert_eq!(
            (from_bytes.sample_rate(), from_bytes.channels()),
            (from_file.sample_rate(), from_file.channels()),
            "{name}"
        );
        let reference = from_bytes.reference(&opts).unwrap();
        assert_eq!(
            reference,
            load_reference_audio(&path, &opts).unwrap(),
            "{name}"
        );
        assert_eq!(
            from_bytes.stereo(44_100).unwrap(),
            load_stereo_audio(&path, 44_100).unwrap(),
            "{name}"
        );
        let given = DecodedAudio::from_interleaved(
            from_file.samples().to_vec(),
            from_file.sample_rate(),
            from_file.channels(),
        )
        .unwrap();
        assert_eq!(given.reference(&opts).unwrap(), reference, "{name}");
    }
}

#[test]
fn bad_bytes_and_samples_fail_clearly() {
    let e = DecodedAudio::decode(&MediaSource::from(b"not audio at all".repeat(10)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("(in-memory bytes, 160 B): not a supported audio file"),
        "{e}"
    );
    let e = DecodedAudio::from_interleaved(vec![0.1, f32::NAN], 44_100, 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sample 0 of channel 1 is NaN"), "{e}");
    let e = DecodedAudio::from_interleaved(vec![0.1; 3], 44_100, 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 samples"), "{e}");
    assert!(DecodedAudio::from_interleaved(vec![0.1; 4], 0, 2).is_err());

    // A float WAV holding NaN would poison the model: refused, naming the sample.
    let dir = tempfile::tempdir().unwrap();
    let nan = dir.path().join("nan.wav");
    let mut samples = vec![0.25f32; 2 * 4410];
    samples[2 * 100 + 1] = f32::INFINITY;
    write_wav(&nan, &samples, 2, 44_100, WavFormat::Float32).unwrap();
    let e = err_of(&nan);
    assert!(e.contains("sample 100 of channel 1 is inf"), "{e}");
}

/// A float WAV whose samples are finite but near f32's range (found by the fuzzer: a PCM WAV's
/// bytes spliced into a float WAV) used to panic inside the resampler's FFT; it is refused.
#[test]
fn absurdly_loud_float_samples_are_refused_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loud.wav");
    let mut samples = vec![0.25f32; 2 * 4410];
    samples[2 * 300] = 3.0e38;
    write_wav(&path, &samples, 2, 44_100, WavFormat::Float32).unwrap();
    let e = err_of(&path);
    assert!(
        e.contains("sample 300 of channel 0 is 300000000000000000000000000000000000000"),
        "{e}"
    );
    assert!(e.contains("within ±1000"), "{e}");
    // Over-range audio a few dB above full scale is real and still accepted.
    samples[2 * 300] = 1.5;
    write_wav(&path, &samples, 2, 44_100, WavFormat::Float32).unwrap();
    load_reference_audio(&path, &AudioInputOptions::default()).unwrap();
}
