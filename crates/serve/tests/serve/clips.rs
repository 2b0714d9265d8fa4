//! What a clip is: `POST /v1/videos/sync` answers the MP4 itself, an `input_audio` voice sets
//! the clip's length (the object reports what was made, not what was asked), and downloads
//! answer byte ranges.

use std::time::Duration;

use crate::support::{finished, get, get_with, post_multipart, Part, Server};

/// One second of a 440 Hz tone as a 16-bit mono WAV at 16 kHz.
fn voice() -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut wav = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..16_000 {
        let t = i as f32 / 16_000.0;
        wav.write_sample(((t * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16)
            .unwrap();
    }
    wav.finalize().unwrap();
    out.into_inner()
}

#[test]
fn sync_answers_the_mp4_and_a_voice_sets_the_length() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let reply = post_multipart(
        &server.url("/v1/videos/sync"),
        None,
        &[
            Part::Text("prompt", "She says: one, two."),
            Part::Text("size", "64x64"),
            Part::Text("seconds", "3"),
            Part::File("input_audio", &voice()),
        ],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("video/mp4"));
    assert_eq!(&reply.body[4..8], b"ftyp", "not an MP4");
    let id = reply.header("x-video-id").unwrap().to_string();
    let video = finished(&server, None, &id, Duration::from_secs(5));
    assert_eq!(video["status"], "completed");
    assert_eq!(
        video["seconds"], "1",
        "3 s were asked, the voice lasts 1 s: {video}"
    );

    // Byte ranges of the same clip.
    let url = server.url(&format!("/v1/videos/{id}/content"));
    let whole = get(&url, None);
    assert_eq!(whole.body, reply.body);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let len = whole.body.len();
    let part = get_with(&url, None, ("Range", "bytes=100-199"));
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-199/{len}").as_str())
    );
    assert_eq!(part.body, whole.body[100..200]);
    let tail = get_with(&url, None, ("Range", "bytes=-10"));
    assert_eq!(
        (tail.status, tail.body.as_slice()),
        (206, &whole.body[len - 10..])
    );
    let beyond = get_with(&url, None, ("Range", &format!("bytes={len}-")));
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    let several = get_with(&url, None, ("Range", "bytes=0-1,5-6"));
    assert_eq!(
        (several.status, several.body.len()),
        (200, len),
        "several ranges: the whole clip"
    );
}
