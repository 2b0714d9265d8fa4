//! Test helpers: ffmpeg/ffprobe as an independent validator, and synthetic clips.
//!
//! ffmpeg is a test-only dependency: `.ci/run` installs it from `.ci/apt-packages.txt`.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Runs a tool and returns stdout, failing the test with stderr on error.
pub fn run(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "{tool} is required by this test (installed by .ci/run from .ci/apt-packages.txt): {e}"
        )
    });
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `ffmpeg -v error` with the given arguments.
pub fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let mut all = vec!["-nostdin", "-v", "error", "-y"];
    all.extend_from_slice(args);
    run("ffmpeg", &all)
}

/// ffprobe's JSON for streams, format and (optionally) frames of one stream.
pub fn ffprobe(path: &Path, extra: &[&str]) -> serde_json::Value {
    let p = path.to_str().unwrap();
    let mut args = vec![
        "-v",
        "error",
        "-of",
        "json",
        "-show_streams",
        "-show_format",
    ];
    args.extend_from_slice(extra);
    args.push(p);
    serde_json::from_slice(&run("ffprobe", &args)).unwrap()
}

/// Decodes every video frame to 8-bit gray, failing on any decoder error.
pub fn decode_gray(path: &Path, width: usize, height: usize) -> Vec<Vec<u8>> {
    let raw = ffmpeg(&[
        "-xerror",
        "-i",
        path.to_str().unwrap(),
        "-map",
        "0:v:0",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "gray",
        "-",
    ]);
    assert_eq!(raw.len() % (width * height), 0, "partial frame decoded");
    raw.chunks(width * height).map(<[u8]>::to_vec).collect()
}

/// Decodes the audio track to interleaved f32 at its own rate (edit list applied by ffmpeg).
pub fn decode_audio(path: &Path, channels: usize) -> Vec<f32> {
    let ch = channels.to_string();
    let raw = ffmpeg(&[
        "-xerror",
        "-i",
        path.to_str().unwrap(),
        "-map",
        "0:a:0",
        "-f",
        "f32le",
        "-ac",
        &ch,
        "-",
    ]);
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Start indices of clicks in a mono signal: the first sample of each burst above `threshold`,
/// bursts separated by at least `gap` quiet samples.
pub fn onsets(mono: &[f32], threshold: f32, gap: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut last: Option<usize> = None;
    for (i, v) in mono.iter().enumerate() {
        if v.abs() > threshold {
            if last.is_none_or(|l| i - l > gap) {
                out.push(i);
            }
            last = Some(i);
        }
    }
    out
}

/// The top-level box types of an MP4 file, in order.
pub fn top_level_boxes(bytes: &[u8]) -> Vec<String> {
    let mut pos = 0usize;
    let mut out = Vec::new();
    while pos + 8 <= bytes.len() {
        let size32 = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as u64;
        let kind = String::from_utf8_lossy(&bytes[pos + 4..pos + 8]).into_owned();
        let size = match size32 {
            1 => u64::from_be_bytes(bytes[pos + 8..pos + 16].try_into().unwrap()),
            0 => (bytes.len() - pos) as u64,
            s => s,
        };
        out.push(kind);
        pos += size as usize;
    }
    assert_eq!(pos, bytes.len(), "boxes do not tile the file");
    out
}

/// The body of the first top-level box of `kind` (header included).
pub fn top_level_box<'a>(bytes: &'a [u8], kind: &str) -> &'a [u8] {
    let mut pos = 0usize;
    while pos + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        if &bytes[pos + 4..pos + 8] == kind.as_bytes() {
            return &bytes[pos..pos + size];
        }
        pos += size;
    }
    panic!("no {kind} box");
}

/// A `width x height` RGB frame: a dark moving gradient, or full white for a flash.
pub fn synthetic_frame(width: usize, height: usize, index: usize, flash: bool) -> Vec<u8> {
    let mut f = vec![0u8; width * height * 3];
    for y in 0..height {
        for x in 0..width {
            let p = (y * width + x) * 3;
            if flash {
                f[p..p + 3].copy_from_slice(&[255, 255, 255]);
            } else {
                let v = 20 + ((x + y + index * 3) % 64) as u8;
                f[p..p + 3].copy_from_slice(&[v, v / 2 + 10, 80 - v / 2]);
            }
        }
    }
    f
}

/// Interleaved stereo silence of `frames` frames with 5 ms clicks of `amp` at `starts`.
pub fn clicks(frames: usize, rate: usize, starts: &[usize], amp: f32) -> Vec<f32> {
    let mut a = vec![0f32; frames * 2];
    let len = rate * 5 / 1000;
    for &s in starts {
        for i in s..(s + len).min(frames) {
            a[2 * i] = amp;
            a[2 * i + 1] = amp;
        }
    }
    a
}

/// Names of the entries in a folder, sorted.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The samples of track `index` (0 = video) of an MP4 file, read through its sample tables.
pub fn track_samples(bytes: &[u8], index: usize) -> Vec<Vec<u8>> {
    use mp4_atom::{Decode, StszSamples};
    let moov = mp4_atom::Moov::decode(&mut top_level_box(bytes, "moov")).unwrap();
    let stbl = &moov.trak[index].mdia.minf.stbl;
    let sizes = match &stbl.stsz.samples {
        StszSamples::Different { sizes } => sizes.clone(),
        StszSamples::Identical { count, size } => vec![*size; *count as usize],
    };
    let offsets: Vec<u64> = match (&stbl.stco, &stbl.co64) {
        (Some(s), _) => s.entries.iter().map(|&o| u64::from(o)).collect(),
        (_, Some(c)) => c.entries.clone(),
        _ => panic!("no chunk offsets"),
    };
    let mut out = Vec::new();
    let mut sample = 0;
    for (c, &offset) in offsets.iter().enumerate() {
        let chunk_no = c as u32 + 1;
        let per_chunk = stbl
            .stsc
            .entries
            .iter()
            .rev()
            .find(|e| e.first_chunk <= chunk_no)
            .unwrap()
            .samples_per_chunk;
        let mut pos = offset as usize;
        for _ in 0..per_chunk {
            let size = sizes[sample] as usize;
            out.push(bytes[pos..pos + size].to_vec());
            pos += size;
            sample += 1;
        }
    }
    assert_eq!(sample, sizes.len());
    out
}
