//! The MP4 writer checked by a real decoder (ffmpeg): every frame decodes, durations match, the
//! header comes first, and white flashes line up with audio clicks within 1 ms.

mod common;

use cadence_media::{AudioParams, Mp4Writer, VideoParams};
use common::*;
use mp4_atom::{Decode, Moov};

const FPS: usize = 25;
const RATE: usize = 44_100;

/// Writes a clip with flashes at `flash_frames` and clicks on the matching samples, pushing
/// video and audio in uneven interleaved chunks as a streaming pipeline would.
fn write_clip(
    path: &std::path::Path,
    video: VideoParams,
    audio_params: AudioParams,
    frames: usize,
    flash_frames: &[usize],
) -> cadence_media::Mp4Summary {
    let (w, h) = (video.width as usize, video.height as usize);
    let samples_per_frame = RATE / FPS; // 1764
    let audio = clicks(
        frames * samples_per_frame,
        RATE,
        &flash_frames
            .iter()
            .map(|f| f * samples_per_frame)
            .collect::<Vec<_>>(),
        0.8,
    );
    let mut writer = Mp4Writer::create(path, video, audio_params).unwrap();
    let mut audio_pos = 0;
    let mut frame = 0;
    while frame < frames {
        let n = 7.min(frames - frame);
        let chunk: Vec<u8> = (frame..frame + n)
            .flat_map(|i| synthetic_frame(w, h, i, flash_frames.contains(&i)))
            .collect();
        writer.push_frames(&chunk).unwrap();
        frame += n;
        let take = (3001 * 2).min(audio.len() - audio_pos);
        writer
            .push_audio(&audio[audio_pos..audio_pos + take])
            .unwrap();
        audio_pos += take;
    }
    writer.push_audio(&audio[audio_pos..]).unwrap();
    writer.finish().unwrap()
}

/// The first edit of track `index` (0 = video, 1 = audio).
fn first_edit(moov: &Moov, index: usize) -> mp4_atom::ElstEntry {
    let edts = moov.trak[index].edts.as_ref().expect("an edit list");
    edts.elst.as_ref().expect("an elst box").entries[0].clone()
}

fn f64_of(v: &serde_json::Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn flashes_and_clicks_agree_within_a_millisecond() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sync.mp4");
    // 180 rows is not a multiple of 16: exercises SPS cropping. Segments of 10 frames on 3
    // threads finish out of order and must be reassembled.
    let video = VideoParams {
        segment_frames: 10,
        threads: 3,
        ..VideoParams::new(320, 180, FPS as u32)
    };
    let frames = 75;
    let flashes = [10, 33, 61];
    let summary = write_clip(&path, video, AudioParams::default(), frames, &flashes);
    assert_eq!(summary.frames, 75);
    assert_eq!(summary.audio_samples, 75 * 1764);
    assert_eq!(
        dir_entries(dir.path()),
        vec!["sync.mp4"],
        "no temporary files left"
    );

    // Container layout: header first, then the media.
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(top_level_boxes(&bytes), vec!["ftyp", "moov", "mdat"]);
    let moov = Moov::decode(&mut top_level_box(&bytes, "moov")).unwrap();
    let elst = |i: usize| first_edit(&moov, i);
    assert_eq!(elst(0).media_time, Some(0));
    assert_eq!(
        elst(1).media_time,
        Some(1024),
        "syom's priming is cut by the edit list"
    );
    assert_eq!(elst(1).segment_duration, 75 * 1764);

    // Streams as ffprobe sees them.
    let probe = ffprobe(&path, &[]);
    let streams = probe["streams"].as_array().unwrap();
    let v = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    let a = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(180))
    );
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["profile"], "LC");
    assert_eq!(a["sample_rate"], "44100");
    assert_eq!(a["channels"].as_u64(), Some(2));
    assert!(
        (f64_of(&v["duration"]) - 3.0).abs() < 1e-6,
        "{}",
        v["duration"]
    );
    assert!(
        (f64_of(&a["duration"]) - 3.0).abs() < 1e-3,
        "{}",
        a["duration"]
    );
    assert!(f64_of(&a["start_time"]).abs() < 1e-6, "audio starts at 0");
    assert!(f64_of(&v["start_time"]).abs() < 1e-6, "video starts at 0");

    // Every frame decodes (ffmpeg -xerror), flashes exactly where they were put.
    let gray = decode_gray(&path, 320, 180);
    assert_eq!(gray.len(), frames, "decoded frame count");
    let bright: Vec<usize> = gray
        .iter()
        .enumerate()
        .filter(|(_, f)| f.iter().map(|&p| u64::from(p)).sum::<u64>() / f.len() as u64 > 200)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(bright, flashes);

    // Every segment starts with a key frame.
    let frames_json = ffprobe(
        &path,
        &[
            "-select_streams",
            "v",
            "-show_entries",
            "frame=key_frame,pts_time",
            "-show_frames",
        ],
    );
    let vf = frames_json["frames"].as_array().unwrap();
    assert_eq!(vf.len(), frames);
    for s in (0..frames).step_by(10) {
        assert_eq!(
            vf[s]["key_frame"].as_u64(),
            Some(1),
            "frame {s} starts a segment"
        );
    }

    assert_clicks_on_flashes(&path, &flashes, frames * 1764);
}

/// Clicks (decoded by ffmpeg, edit list applied) against flash display times (ffprobe).
fn assert_clicks_on_flashes(path: &std::path::Path, flashes: &[usize], samples: usize) {
    let frames_json = ffprobe(
        path,
        &[
            "-select_streams",
            "v",
            "-show_entries",
            "frame=pts_time",
            "-show_frames",
        ],
    );
    let vf = frames_json["frames"].as_array().unwrap();
    let audio = decode_audio(path, 1);
    assert!(
        (samples..=samples + 1024).contains(&audio.len()),
        "decoded {} samples",
        audio.len()
    );
    let clicks = onsets(&audio, 0.4, RATE / 20);
    assert_eq!(clicks.len(), flashes.len(), "clicks found at {clicks:?}");
    for (&click, &flash) in clicks.iter().zip(flashes) {
        let click_t = click as f64 / RATE as f64;
        let flash_t = f64_of(&vf[flash]["pts_time"]);
        let diff_ms = (click_t - flash_t).abs() * 1000.0;
        println!("flash {flash}: video {flash_t:.5} s, audio {click_t:.5} s, diff {diff_ms:.3} ms");
        assert!(diff_ms < 1.0, "flash {flash} off by {diff_ms} ms");
    }
}

/// The opt-in FDK encoder has a 2048-sample priming; the edit list must cut it as well.
#[cfg(feature = "fdk-aac")]
#[test]
fn fdk_aac_priming_is_cut_by_the_edit_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fdk.mp4");
    let audio = AudioParams {
        encoder: cadence_media::AacBackend::Fdk,
        ..AudioParams::default()
    };
    let flashes = [5, 30];
    write_clip(
        &path,
        VideoParams::new(160, 96, FPS as u32),
        audio,
        50,
        &flashes,
    );
    let bytes = std::fs::read(&path).unwrap();
    let moov = Moov::decode(&mut top_level_box(&bytes, "moov")).unwrap();
    let elst = moov.trak[1].edts.as_ref().unwrap().elst.as_ref().unwrap();
    assert_eq!(elst.entries[0].media_time, Some(2048));
    assert_eq!(decode_gray(&path, 160, 96).len(), 50);
    assert_clicks_on_flashes(&path, &flashes, 50 * 1764);
}

#[test]
fn full_hd_1080_is_cropped_in_the_sps_and_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hd.mp4");
    let video = VideoParams::new(1920, 1080, 25);
    let mut w = Mp4Writer::create(&path, video, AudioParams::default()).unwrap();
    for i in 0..3 {
        w.push_frames(&synthetic_frame(1920, 1080, i, i == 1))
            .unwrap();
    }
    let s = w.finish().unwrap();
    assert_eq!((s.frames, s.audio_samples), (3, 0));
    let probe = ffprobe(&path, &[]);
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "no audio pushed: video-only file");
    assert_eq!(streams[0]["width"].as_u64(), Some(1920));
    assert_eq!(streams[0]["height"].as_u64(), Some(1080));
    let gray = decode_gray(&path, 1920, 1080);
    assert_eq!(gray.len(), 3);
    assert!(gray[1].iter().all(|&p| p > 230), "flash frame is white");
}

#[test]
fn bitstream_does_not_depend_on_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut streams = Vec::new();
    for threads in [1, 3] {
        let path = dir.path().join(format!("t{threads}.mp4"));
        let video = VideoParams {
            segment_frames: 4,
            threads,
            ..VideoParams::new(128, 96, 25)
        };
        let mut w = Mp4Writer::create(&path, video, AudioParams::default()).unwrap();
        for i in 0..14 {
            w.push_frames(&synthetic_frame(128, 96, i, i == 5)).unwrap();
        }
        w.push_audio(&clicks(14 * 1764, RATE, &[5 * 1764], 0.5))
            .unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        streams.push((track_samples(&bytes, 0), track_samples(&bytes, 1)));
        assert_eq!(decode_gray(&path, 128, 96).len(), 14);
    }
    assert_eq!(streams[0].0.len(), 14);
    assert!(
        streams[0] == streams[1],
        "1 and 3 threads must give identical samples"
    );
}

/// Audio longer than the video (the demo's decoder gives 2.040 s of sound for 1.960 s of
/// frames) is cut to the video: both streams and the file end within one frame, the priming edit
/// still starts the sound at 0, and a decoder gives no sound past the last frame.
#[test]
fn audio_longer_than_the_video_is_cut_to_the_last_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.mp4");
    let video = VideoParams::new(64, 48, FPS as u32);
    let frames = 49;
    let mut writer = Mp4Writer::create(&path, video, AudioParams::default()).unwrap();
    for i in 0..frames {
        writer
            .push_frames(&synthetic_frame(64, 48, i, false))
            .unwrap();
    }
    let long = (2.04 * RATE as f64) as usize;
    writer.push_audio(&vec![0.25; 2 * long]).unwrap();
    let summary = writer.finish().unwrap();
    let video_samples = frames * RATE / FPS;
    assert_eq!(summary.audio_samples, video_samples as u64);

    let bytes = std::fs::read(&path).unwrap();
    let moov = Moov::decode(&mut top_level_box(&bytes, "moov")).unwrap();
    let audio_edit = first_edit(&moov, 1);
    assert_eq!(audio_edit.media_time, Some(1024), "priming still cut");
    assert_eq!(audio_edit.segment_duration, video_samples as u64);

    let probe = ffprobe(&path, &[]);
    let streams = probe["streams"].as_array().unwrap();
    let duration =
        |kind: &str| f64_of(&streams.iter().find(|s| s["codec_type"] == kind).unwrap()["duration"]);
    let (v, a, f) = (
        duration("video"),
        duration("audio"),
        f64_of(&probe["format"]["duration"]),
    );
    println!("video {v} s, audio {a} s, file {f} s");
    let frame = 1.0 / FPS as f64;
    assert!((v - 1.96).abs() < 1e-6, "video {v}");
    assert!((a - v).abs() < frame, "audio {a} s against video {v} s");
    assert!((f - v).abs() < frame, "file {f} s against video {v} s");
    let decoded = decode_audio(&path, 2).len() / 2;
    assert!(
        decoded <= video_samples + 1024,
        "decoded {decoded} samples, the video lasts {video_samples}"
    );
}
