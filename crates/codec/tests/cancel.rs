//! Cancellation inside the long decodes and encodes: another thread cancels part-way and the
//! call returns `Error::Cancelled` soon after, not at the end of a window or clip.
//!
//! The models have the demo's tiny widths (`Engine::demo`) with seeded random weights and the
//! demo's sizes (448x256, 2 s; 20 s of audio), so each call runs for seconds. Checks sit between
//! blocks, so a single convolution is never interrupted: at 1080p on a CPU the Wan encoder's
//! first convolution alone takes 1-2 s. The goal is a stop within 1 s of
//! `cancel()` on two cores; the assertion allows 3 s so a loaded CI machine does not fail it.
//! `--nocapture` prints every measured latency.

use std::time::{Duration, Instant};

use cadence_codec::oobleck::config::{DecoderConfig, EncoderConfig};
use cadence_codec::{
    encode_reference_audio, latent_to_waveform_44100, Oobleck, OobleckConfig, ReferenceAudioConfig,
    TurboConfig, TurboVaed, WanConfig, WanVae,
};
use cadence_core::{CancelToken, Error, RandomWeights, Result, TensorSpec};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

/// The most a stop may take here (the goal is 1 s; this leaves room for a loaded machine).
const ROBUST_BOUND: Duration = Duration::from_secs(3);

/// Seeded random weights for `specs` as a `VarBuilder` in f32 on the CPU.
fn random_vb(specs: &[TensorSpec]) -> VarBuilder<'static> {
    let dev = Device::Cpu;
    let tensors = RandomWeights::seeded(specs, "", 7)
        .tensors(DType::F32, &dev)
        .unwrap();
    VarBuilder::from_tensors(tensors, DType::F32, &dev)
}

fn noise(shape: &[usize]) -> Tensor {
    Tensor::randn(0f32, 1f32, shape, &Device::Cpu).unwrap()
}

/// Runs `work` with a token that another thread cancels after `delay`; asserts that it stopped
/// with `Error::Cancelled` within [`ROBUST_BOUND`] and returns the latency of the stop.
fn stop_latency(name: &str, delay: Duration, work: impl FnOnce(&CancelToken) -> Result<()>) {
    let token = CancelToken::new();
    let remote = token.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(delay);
        remote.cancel();
        Instant::now()
    });
    let result = work(&token);
    let stopped = Instant::now();
    let cancelled_at = canceller.join().unwrap();
    match result {
        Err(Error::Cancelled) => {}
        Ok(()) => panic!("{name}: finished before the cancel at {delay:?}; give it more work"),
        Err(e) => panic!("{name}: failed with {e} instead of stopping"),
    }
    let latency = stopped.saturating_duration_since(cancelled_at);
    println!("{name}: cancelled at {delay:?}, stopped {latency:?} later");
    assert!(latency < ROBUST_BOUND, "{name}: took {latency:?} to stop");
}

/// The demo's Turbo-VAED (widths 4, 4, 8, 8).
fn demo_turbo() -> TurboVaed {
    let cfg = TurboConfig {
        decoder_block_out_channels: vec![4, 4, 8, 8],
        ..TurboConfig::turbo_v3_wan22()
    };
    TurboVaed::new(&random_vb(&TurboVaed::tensor_specs(&cfg).unwrap()), &cfg).unwrap()
}

/// The demo's Wan2.2 VAE (dim 4, dec_dim 6).
fn demo_wan() -> WanVae {
    let cfg = WanConfig {
        dim: 4,
        dec_dim: 6,
        ..WanConfig::wan22_ti2v_5b()
    };
    WanVae::new(&random_vb(&WanVae::tensor_specs(&cfg).unwrap()), &cfg).unwrap()
}

/// The demo's Oobleck (real strides, 4 base channels).
fn demo_oobleck() -> Oobleck {
    let (c_mults, strides) = (vec![1, 2, 4, 8, 16], vec![2, 4, 4, 8, 8]);
    let cfg = OobleckConfig {
        encoder: EncoderConfig {
            in_channels: 2,
            channels: 4,
            c_mults: c_mults.clone(),
            strides: strides.clone(),
            latent_dim: 128,
            use_snake: true,
        },
        decoder: DecoderConfig {
            out_channels: 2,
            channels: 4,
            c_mults,
            strides,
            latent_dim: 64,
            use_snake: true,
            final_tanh: false,
        },
        latent_dim: 64,
        downsampling_ratio: 2048,
        sample_rate: 44_100,
    };
    Oobleck::new(&random_vb(&Oobleck::tensor_specs(&cfg).unwrap()), &cfg).unwrap()
}

/// The demo clip's video latent: 2 s at 448x256 (13 latent frames of 16 x 28).
fn demo_video_latent() -> Tensor {
    noise(&[1, 48, 13, 16, 28])
}

#[test]
fn turbo_decode_stops_inside_a_window() {
    let turbo = demo_turbo();
    let latent = demo_video_latent();
    // Early in the first window, and in the second one.
    for ms in [300, 2500] {
        stop_latency("turbo decode_streaming", Duration::from_millis(ms), |c| {
            turbo.decode_streaming(&latent, c, |_| Ok(()))
        });
    }
    stop_latency("turbo decode", Duration::from_millis(300), |c| {
        turbo.decode(&latent, c).map(drop)
    });
}

#[test]
fn wan_decode_and_encode_stop_part_way() {
    let wan = demo_wan();
    let latent = demo_video_latent();
    stop_latency("wan decode_streaming", Duration::from_millis(300), |c| {
        wan.decode_streaming(&latent, c, |_| Ok(()))
    });
    stop_latency("wan decode", Duration::from_millis(300), |c| {
        wan.decode(&latent, c).map(drop)
    });
    // The image encoder's path on 33 frames at the demo's size (one image encodes in ~0.1 s
    // here, too fast to cancel part-way).
    let video = noise(&[1, 3, 33, 256, 448]);
    stop_latency("wan encode_video", Duration::from_millis(300), |c| {
        wan.encode_video(&video, c).map(drop)
    });
}

#[test]
fn oobleck_decode_and_encode_stop_part_way() {
    let vae = demo_oobleck();
    // 20 s, the longest clip the default limits allow.
    let latent = noise(&[1, 500, 64]);
    stop_latency("oobleck decode", Duration::from_millis(300), |c| {
        latent_to_waveform_44100(&vae, &latent, c).map(drop)
    });
    let wave = noise(&[2, 20 * 51_200]);
    let mut mean = cadence_codec::oobleck::MeanOnly;
    stop_latency("oobleck encode", Duration::from_millis(300), |c| {
        encode_reference_audio(
            &vae,
            &wave,
            None,
            &ReferenceAudioConfig::default(),
            &mut mean,
            c,
        )
        .map(drop)
    });
}

#[test]
fn a_token_cancelled_before_the_call_stops_it_at_once() {
    let token = CancelToken::new();
    token.cancel();
    let cancelled = |r: Result<()>| matches!(r, Err(Error::Cancelled));
    let turbo = demo_turbo();
    let wan = demo_wan();
    let vae = demo_oobleck();
    let latent = demo_video_latent();
    assert!(cancelled(
        turbo.decode_streaming(&latent, &token, |_| Ok(()))
    ));
    assert!(cancelled(wan.decode_streaming(&latent, &token, |_| Ok(()))));
    assert!(cancelled(
        wan.encode_image(&noise(&[1, 3, 256, 448]), &token)
            .map(drop)
    ));
    assert!(cancelled(
        vae.decode(&noise(&[1, 64, 50]), &token).map(drop)
    ));
    let mut mean = cadence_codec::oobleck::MeanOnly;
    assert!(cancelled(
        vae.encode(&noise(&[1, 2, 2 * 51_200]), &mut mean, &token)
            .map(drop)
    ));
}
