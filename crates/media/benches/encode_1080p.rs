//! Encoding speed of the MP4 writer at 1080p (a benchmark binary, not a test).
//!
//! Run: `cargo bench -p cadence-media --bench encode_1080p` (add `--profile test` to reuse the
//! test build). Build once with `nasm` on the PATH and once with `OPENH264_NO_ASM=1` (in another
//! target dir) to compare openh264 with and without assembly.
//!
//! Set `SOURCE_DATE_EPOCH=0` to make the printed file hashes comparable between builds.
//!
//! Environment: `CADENCE_BENCH_SECONDS` (clip length, default 15), `CADENCE_BENCH_THREADS`
//! (comma-separated thread counts, default "1,<cores>").

use std::time::Instant;

use cadence_media::{AudioParams, Mp4Writer, VideoParams};

const W: usize = 1920;
const H: usize = 1080;
const FPS: usize = 25;
const LOOP: usize = 25;

/// A panning texture with a moving bright disc: content that costs real encoding work.
fn frame(i: usize) -> Vec<u8> {
    let mut f = vec![0u8; W * H * 3];
    let (cx, cy) = ((200 + i * 23) % W, (300 + i * 11) % H);
    for y in 0..H {
        for x in 0..W {
            let u = x + i * 4;
            let v = y + i * 2;
            let tex = (((u * 7) ^ (v * 13)) % 97) as u8;
            let d2 = (x as i64 - cx as i64).pow(2) + (y as i64 - cy as i64).pow(2);
            let disc = if d2 < 150 * 150 { 120 } else { 0 };
            let p = (y * W + x) * 3;
            f[p] = tex.saturating_add(disc).saturating_add((u / 8) as u8);
            f[p + 1] = (tex / 2).saturating_add(disc).saturating_add((v / 6) as u8);
            f[p + 2] = 90u8.saturating_sub(tex / 3).saturating_add(disc / 2);
        }
    }
    f
}

/// CPU seconds (user + system) this process has used, from /proc (Linux; 0 elsewhere). Shows
/// how much of the wall time was real work when other processes share the cores.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name start with the state (field 3); utime and
    // stime are fields 14 and 15.
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // Clock ticks are 100 per second on Linux.
    tick(11).zip(tick(12)).map_or(0.0, |(u, s)| (u + s) / 100.0)
}

/// A hash of the written file, to compare builds (with and without assembly) and thread counts:
/// equal with `SOURCE_DATE_EPOCH` set (the header's creation time), else it differs each run.
fn file_hash(path: &std::path::Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(path)
        .expect("read the clip back")
        .hash(&mut h);
    h.finish()
}

fn main() {
    let seconds: usize = std::env::var("CADENCE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<usize> = std::env::var("CADENCE_BENCH_THREADS")
        .ok()
        .map(|s| s.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| if cores > 1 { vec![1, cores] } else { vec![1] });
    let frames = seconds * FPS;
    println!("1080p ({W}x{H}) at {FPS} fps, {seconds} s = {frames} frames, {cores} cores");

    let t = Instant::now();
    let pattern: Vec<Vec<u8>> = (0..LOOP).map(frame).collect();
    println!(
        "generated {LOOP} distinct frames in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let audio: Vec<f32> = (0..seconds * 44_100 * 2)
        .map(|i| ((i / 2) as f32 * 0.0627).sin() * 0.3)
        .collect();

    // RGB -> I420 alone (done by the encoder workers, off the calling thread).
    let t = Instant::now();
    for f in &pattern {
        let yuv = openh264::formats::YUVBuffer::from_rgb8_source(
            openh264::formats::RgbSliceU8::new(f, (W, H)),
        );
        let _ = std::hint::black_box(yuv);
    }
    println!(
        "RGB -> I420: {:.2} ms per frame",
        t.elapsed().as_secs_f64() * 1000.0 / LOOP as f64
    );

    let dir = tempfile::tempdir().expect("temp dir");
    for &n in &threads {
        let path = dir.path().join(format!("bench_{n}.mp4"));
        let video = VideoParams {
            threads: n,
            ..VideoParams::new(W as u32, H as u32, FPS as u32)
        };
        let t = Instant::now();
        let cpu = cpu_seconds();
        let mut w = Mp4Writer::create(&path, video, AudioParams::default()).expect("create");
        for s in 0..seconds {
            for i in 0..FPS {
                w.push_frames(&pattern[(s * FPS + i) % LOOP])
                    .expect("frames");
            }
            w.push_audio(&audio[s * 88_200..(s + 1) * 88_200])
                .expect("audio");
        }
        let summary = w.finish().expect("finish");
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        println!(
            "threads {n}: whole {seconds} s clip {secs:.2} s, {:.1} ms per frame ({:.1} ms CPU), \
             {:.1} Mbit/s, {:.2}x real time, file hash {:016x}",
            secs * 1000.0 / frames as f64,
            cpu * 1000.0 / frames as f64,
            summary.bytes as f64 * 8.0 / seconds as f64 / 1e6,
            seconds as f64 / secs,
            file_hash(&path)
        );
    }

    // AAC alone for the whole clip.
    let t = Instant::now();
    let mut enc =
        cadence_media::mp4::aac::new_encoder(Default::default(), 44_100, 2, 192_000).expect("aac");
    let mut units = Vec::new();
    enc.encode(&audio, &mut units).expect("aac encode");
    enc.finish(&mut units).expect("aac finish");
    println!(
        "AAC (syom) {seconds} s stereo: {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
}
