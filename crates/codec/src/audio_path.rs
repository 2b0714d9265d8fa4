//! The audio path around the Oobleck VAE: the 51 200 Hz trick, the 441/512 resample, and the
//! windowed encoding of user reference audio.
//!
//! The VAE was trained at 44.1 kHz (2048 samples per latent) but the pipeline runs it at
//! 51 200 Hz, so one latent lasts 1/25 s, one per video frame. Generated latents are decoded as
//! 51.2 kHz audio and resampled by 441/512 to the 44.1 kHz written to the file; user audio is
//! loaded at 51.2 kHz (by the media crate) and encoded in 29 s windows with 50 % overlap.

use cadence_core::{CancelToken, Error, Result};
use candle_core::{DType, Tensor};
use realfft::num_complex::Complex;
use realfft::RealFftPlanner;

use crate::oobleck::{BottleneckNoise, Oobleck};

/// Sample rate the pipeline runs the audio VAE at (one latent per 1/25 s).
pub const VAE_SAMPLE_RATE: u32 = 51_200;
/// Sample rate of the written audio.
pub const OUTPUT_SAMPLE_RATE: u32 = 44_100;

/// `scipy.signal.resample(x, m)` along axis 0 of a time-major `[N, C]` waveform: FFT
/// resampling without a window. Keeps bins `0..=min(m, n)/2`, doubles (downsampling) or halves
/// (upsampling) the bin at `min/2` when `min` is even, inverse real FFT of length `m`, scaled by
/// `m / n`. Computed in f64 (the reference's f32 FFT lands within ~1e-6 of it).
pub fn resample_fft(x: &Tensor, m: usize) -> Result<Tensor> {
    let (n, c) = x.dims2()?;
    if n == 0 || m == 0 {
        return Err(Error::InvalidInput(format!(
            "cannot resample {n} samples to {m}"
        )));
    }
    let data = x
        .to_dtype(DType::F64)?
        .t()?
        .contiguous()?
        .to_vec2::<f64>()?;
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(m);
    let keep = n.min(m);
    let mut out = vec![0f32; m * c];
    for (ch, samples) in data.into_iter().enumerate() {
        let mut input = samples;
        let mut spec = fwd.make_output_vec();
        fwd.process(&mut input, &mut spec)
            .map_err(|e| Error::InvalidInput(format!("FFT: {e}")))?;
        let mut y = inv.make_input_vec();
        y[..keep / 2 + 1].copy_from_slice(&spec[..keep / 2 + 1]);
        if keep % 2 == 0 && m != n {
            y[keep / 2] *= if m < n { 2.0 } else { 0.5 };
        }
        // A real inverse FFT ignores the imaginary parts of DC and (even length) Nyquist.
        y[0].im = 0.0;
        if m.is_multiple_of(2) {
            y[m / 2] = Complex::new(y[m / 2].re, 0.0);
        }
        let mut wave = inv.make_output_vec();
        inv.process(&mut y, &mut wave)
            .map_err(|e| Error::InvalidInput(format!("inverse FFT: {e}")))?;
        for (i, v) in wave.iter().enumerate() {
            out[i * c + ch] = (v / n as f64) as f32;
        }
    }
    Ok(Tensor::from_vec(out, (m, c), x.device())?)
}

/// The pipeline's `resample_audio_sinc(x, 441/512)`: `[N, C]` at 51 200 Hz -> `[⌊N·441/512⌋, C]`
/// at 44 100 Hz.
pub fn resample_51200_to_44100(x: &Tensor) -> Result<Tensor> {
    let n = x.dim(0)?;
    resample_fft(x, n * 441 / 512)
}

/// The audio half of the reference's `post_process`: DiT audio latent `[1, T, 64]` -> Oobleck
/// decode at 51 200 Hz -> time-major `[⌊2048·T·441/512⌋, 2]` float32 at 44 100 Hz.
pub fn latent_to_waveform_44100(
    vae: &Oobleck,
    latent: &Tensor,
    cancel: &CancelToken,
) -> Result<Tensor> {
    let (b, _, _) = latent.dims3()?;
    if b != 1 {
        return Err(Error::InvalidInput(format!(
            "post-processing takes one audio latent [1, T, 64], got {:?}",
            latent.dims()
        )));
    }
    let wave = vae.decode(&latent.squeeze(0)?.t()?, cancel)?; // [1, 2, 2048·T]
    resample_51200_to_44100(&wave.squeeze(0)?.t()?.contiguous()?)
}

/// Windowing of [`encode_reference_audio`] (the reference hard-codes these values).
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceAudioConfig {
    /// Sample rate of the waveform (51 200).
    pub sample_rate: u32,
    /// Window length in seconds (29).
    pub window_seconds: f64,
    /// Overlap of consecutive windows (0.5).
    pub overlap: f64,
}

impl Default for ReferenceAudioConfig {
    fn default() -> Self {
        Self {
            sample_rate: VAE_SAMPLE_RATE,
            window_seconds: 29.0,
            overlap: 0.5,
        }
    }
}

/// The result of [`encode_reference_audio`].
#[derive(Debug, Clone)]
pub struct ReferenceEncoding {
    /// The latent `[1, 64, T]` (VAE layout; the DiT wants it transposed to `[1, T, 64]`).
    pub latent: Tensor,
    /// The encoder output of every window, `[1, 128, ·]`, for inspection.
    pub window_pre_bottleneck: Vec<Tensor>,
}

/// Encodes user reference audio as the reference's `load_audio_and_encode` does.
///
/// `waveform` is float32 at `cfg.sample_rate`, mono `[N]` or `[C, N]` (mono is duplicated to the
/// two channels the VAE takes). With `seconds`, only the first `int(seconds · rate)` samples are
/// used. Audio no longer than one window is encoded at once (`floor(N/2048)` latents). Longer
/// audio is encoded in windows (each zero-padded to full length, each drawing its own noise)
/// whose latents are merged with a linear cross-fade over the overlap, then cut to
/// `ceil(N · latents_per_window / window)` latents.
pub fn encode_reference_audio(
    vae: &Oobleck,
    waveform: &Tensor,
    seconds: Option<f64>,
    cfg: &ReferenceAudioConfig,
    noise: &mut dyn BottleneckNoise,
    cancel: &CancelToken,
) -> Result<ReferenceEncoding> {
    if !(0.0..1.0).contains(&cfg.overlap) {
        return Err(Error::Config(format!(
            "reference-audio overlap {} must be in [0, 1)",
            cfg.overlap
        )));
    }
    let stereo = to_stereo(waveform)?;
    let total = stereo.dim(1)?;
    let n = match seconds {
        Some(s) if s >= 0.0 => ((s * f64::from(cfg.sample_rate)) as usize).min(total),
        Some(s) => return Err(Error::InvalidInput(format!("seconds = {s} is negative"))),
        None => total,
    };
    let window = (cfg.window_seconds * f64::from(cfg.sample_rate)) as usize;
    let step = (window as f64 * (1.0 - cfg.overlap)) as usize;
    if window == 0 || step == 0 {
        return Err(Error::Config(format!(
            "reference-audio windowing {cfg:?} is degenerate"
        )));
    }
    if n <= window {
        let h = vae.encode_pre_bottleneck(&stereo.narrow(1, 0, n)?, cancel)?;
        let latent = crate::oobleck::bottleneck_sample(&h, noise)?;
        return Ok(ReferenceEncoding {
            latent,
            window_pre_bottleneck: vec![h],
        });
    }
    let mut latents = Vec::new();
    let mut pre = Vec::new();
    for start in (0..n).step_by(step) {
        let end = (start + window).min(n);
        let chunk = stereo.narrow(1, start, end - start)?;
        let chunk = chunk.pad_with_zeros(1, 0, window - (end - start))?;
        let h = vae.encode_pre_bottleneck(&chunk, cancel)?;
        latents.push(crate::oobleck::bottleneck_sample(&h, noise)?);
        pre.push(h);
        if end >= n {
            break;
        }
    }
    let per_window = latents[0].dim(2)?;
    let merged = merge_overlapping(&latents, cfg.overlap)?;
    let keep = (n as f64 * (per_window as f64 / window as f64)).ceil() as usize;
    let keep = keep.min(merged.dim(2)?);
    Ok(ReferenceEncoding {
        latent: merged.narrow(2, 0, keep)?,
        window_pre_bottleneck: pre,
    })
}

/// The reference's `merge_overlapping_vae_features` on `[1, C, L]` window latents: window `k`
/// starts at `k·step` with `overlap = int(L·ratio)`, `step = L - overlap`; its first `overlap`
/// frames cross-fade linearly with what is there (`(o-f)/o · old + f/o · new`, the weights
/// rounded to f32 as PyTorch applies a Python float), the rest overwrite.
pub fn merge_overlapping(windows: &[Tensor], ratio: f64) -> Result<Tensor> {
    let first = windows
        .first()
        .ok_or_else(|| Error::InvalidInput("no window to merge".into()))?;
    let (b, c, len) = first.dims3()?;
    if !(0.0..1.0).contains(&ratio) {
        return Err(Error::InvalidInput(format!(
            "overlap ratio {ratio} must be in [0, 1)"
        )));
    }
    let overlap = (len as f64 * ratio) as usize;
    let step = len - overlap;
    let total = (windows.len() - 1) * step + len;
    let rows = b * c;
    let mut out = vec![0f32; rows * total];
    for (k, w) in windows.iter().enumerate() {
        if w.dims() != first.dims() {
            return Err(Error::InvalidInput(format!(
                "window latents differ in shape: {:?} vs {:?}",
                w.dims(),
                first.dims()
            )));
        }
        let w = w
            .to_dtype(DType::F32)?
            .reshape((rows, len))?
            .to_vec2::<f32>()?;
        let start = k * step;
        for (r, row) in w.iter().enumerate() {
            let dst = &mut out[r * total + start..r * total + start + len];
            for (f, (&v, o)) in row.iter().zip(dst.iter_mut()).enumerate() {
                if k == 0 || f >= overlap {
                    *o = v;
                } else {
                    let prev_w = ((overlap - f) as f64 / overlap as f64) as f32;
                    let cur_w = (f as f64 / overlap as f64) as f32;
                    *o = prev_w * *o + cur_w * v;
                }
            }
        }
    }
    Ok(Tensor::from_vec(out, (b, c, total), first.device())?)
}

/// `[N]`, `[1, N]` -> two identical channels; `[2, N]` as is.
fn to_stereo(x: &Tensor) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    match x.dims() {
        [n] => Ok(x.reshape((1, *n))?.broadcast_as((2, *n))?.contiguous()?),
        [1, n] => Ok(x.broadcast_as((2, *n))?.contiguous()?),
        [2, _] => Ok(x),
        d => Err(Error::InvalidInput(format!(
            "reference audio must be mono [N] or [C<=2, N], got {d:?}"
        ))),
    }
}
