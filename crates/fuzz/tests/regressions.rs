//! Every bug the fuzzer found, as the input that showed it (inline or under `regressions/`),
//! through the same target the fuzzer drives. Each used to panic, hang or allocate far beyond
//! its input; each must now be refused with an error, promptly and within its memory bound.

use std::time::{Duration, Instant};

use cadence_fuzz::alloc::{measure, CountingAlloc};
use cadence_fuzz::seeds;
use cadence_fuzz::targets::named;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs target `name` on `input`: it must refuse it, within a second and its memory bound;
/// returns the refusal.
fn refused(name: &str, input: &[u8]) -> String {
    let target = named(name);
    let start = Instant::now();
    let (result, peak) = measure(|| (target.parse)(input));
    let took = start.elapsed();
    let bound = (target.max_peak)(input.len());
    assert!(peak <= bound, "{name}: held {peak} bytes, bound {bound}");
    assert!(took < Duration::from_secs(1), "{name}: took {took:?}");
    result.expect_err("the input must be refused")
}

/// A seed with its first `from` replaced by `to`.
fn edited(seed: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(seed.to_vec()).unwrap();
    assert!(text.contains(from), "the seed has no {from}");
    text.replacen(from, to, 1).into_bytes()
}

/// `"head_dim": 0` divided by zero while deriving the head counts (a panic).
#[test]
fn a_dit_config_with_head_dim_zero() {
    let input = edited(
        &seeds::dit_config()[0],
        "\"head_dim\": 32",
        "\"head_dim\": 0",
    );
    let e = refused("dit_config", &input);
    assert!(e.contains("head_dim 0"), "{e}");
}

/// Layer and block counts of billions made the loaders list billions of tensors (a hang, then
/// an out-of-memory abort).
#[test]
fn configs_with_absurd_layer_counts() {
    let input = edited(
        &seeds::dit_config()[0],
        "\"num_layers\": 6",
        "\"num_layers\": 65536",
    );
    assert!(refused("dit_config", &input).contains("num_layers 65536 is outside 1..=512"));

    let input = edited(
        &seeds::text_config()[0],
        "\"num_hidden_layers\": 42",
        "\"num_hidden_layers\": 4294967296",
    );
    assert!(refused("text_config", &input).contains("more than the 512"));

    let input = edited(
        &seeds::turbo_config()[0],
        "\"decoder_layers_per_block\": [\n    2,",
        "\"decoder_layers_per_block\": [\n    4294967296,",
    );
    assert!(refused("turbo_config", &input).contains("more than 64 layers"));

    let input = edited(
        &seeds::wan_config()[0],
        "\"num_res_blocks\": 2",
        "\"num_res_blocks\": 4294967296",
    );
    assert!(refused("wan_config", &input).contains("more than 64"));
}

/// A WAV of f32 samples near f32's range (the fuzzer spliced PCM bytes into a float WAV)
/// overflowed the resampler's FFT, which panicked.
#[test]
fn a_float_wav_with_samples_near_f32_max() {
    let mut wav = seeds::wavs()[1].clone(); // float mono
    let data = wav.len() - 4 * 100;
    wav[data..data + 4].copy_from_slice(&3.0e38f32.to_le_bytes());
    let e = refused("wav", &wav);
    assert!(e.contains("within ±1000"), "{e}");
}

/// A 165-byte WebP whose header claims 16152 x 12296 pixels made the decoder reserve 1.4 GB
/// (the WebP decoder ignores image's allocation limit).
#[test]
fn a_tiny_webp_that_claims_a_huge_picture() {
    let input = include_bytes!("../regressions/webp_lossless_16152x12296.bin");
    let e = refused("image", input);
    assert!(e.contains("too large to decode: 16152x12296"), "{e}");
    let (_, peak) = measure(|| (named("image").parse)(input));
    assert!(
        peak < 1 << 20,
        "held {peak} bytes for {} bytes",
        input.len()
    );
}

/// A zip whose central directory declares an 8 MB `data.pkl` (the file is 860 bytes) made the
/// checkpoint reader reserve 8 MB before reading it.
#[test]
fn a_torch_zip_that_declares_a_huge_pickle() {
    let mut zip = seeds::torch_zips()[0].clone();
    // The central directory entry of data.pkl: "PK\x01\x02", its uncompressed size at +24.
    let at = zip.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    zip[at + 24..at + 28].copy_from_slice(&8_323_346u32.to_le_bytes());
    let target = named("torch_zip");
    let (_, peak) = measure(|| (target.parse)(&zip));
    assert!(peak < 1 << 20, "held {peak} bytes for {} bytes", zip.len());
}

/// A WAV header claiming 4.28 GHz made the resampler plan transforms of billions of points (a
/// hang).
#[test]
fn a_wav_that_claims_a_gigahertz_sample_rate() {
    let mut wav = seeds::wavs()[1].clone();
    assert_eq!(&wav[12..16], b"fmt ");
    wav[24..28].copy_from_slice(&4_278_212_130u32.to_le_bytes());
    let e = refused("wav", &wav);
    assert!(
        e.contains("sample rate 4278212130 Hz is outside 1000..=768000"),
        "{e}"
    );
}

/// A WAVE_FORMAT_EXTENSIBLE header of 33 channels overflows a shift in symphonia's channel-mask
/// fix-up (a panic in builds with overflow checks); the loader refuses the file instead.
#[test]
fn a_wav_of_33_channels() {
    let mut wav = seeds::wavs()[1].clone();
    assert_eq!(
        &wav[20..22],
        &0xfffeu16.to_le_bytes(),
        "an extensible header"
    );
    wav[22] = 33;
    let e = refused("wav", &wav);
    assert!(e.contains("(in-memory bytes, "), "{e}");
}

/// Widths of 2^32 multiplied past `usize` while the Wan VAE listed its tensors (a panic in
/// checked builds; every config now bounds its widths).
#[test]
fn a_wan_config_whose_widths_overflow() {
    let input = edited(
        &seeds::wan_config()[0],
        "\"dim\": 4,",
        "\"dim\": 4294967296,",
    );
    let input = edited(&input, "[\n  1,", "[\n  4294967296,");
    let e = refused("wan_config", &input);
    assert!(e.contains("dim is 4294967296, more than the 65536"), "{e}");
}
