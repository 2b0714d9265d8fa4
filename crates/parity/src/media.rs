//! The reference-image pre-processing (fixture kind `image_pre`: resizecrop + Pillow LANCZOS +
//! `2x − 1`) against the official pipeline. Shared by the CPU tests and the GPU self-test.
//!
//! Everything is driven by `case.json` and the files present: the input file, every `out.*`
//! tensor of `io.safetensors` (target size from its shape `[1, 3, 1, H, W]`), and every file
//! listed under `tensors` (an 8-bit RGB image `[H, W, 3]` of the resized result). Tolerances
//! (`atol`, `max_fraction_off`) come from `case.json: tolerances`.
//!
//! Device: decoding, cropping and the LANCZOS resize are 8-bit CPU work by nature (Pillow's
//! fixed-point algorithm); the result becomes a tensor on the given device, as the pipeline
//! hands it to the image encoder, and is compared back on the CPU. There is no precision
//! choice (the tensor is f32, as in the reference), so there is no bf16 mode.

use crate::fixtures::{values, Case};
use cadence_core::{Error, Result};
use candle_core::Device;

use cadence_media::input::image::DecodedImage;
use cadence_media::MediaSource;

/// The fixture kinds this module checks.
pub const KINDS: &[&str] = &["image_pre"];

/// Per-tensor tolerance from case.json.
fn tolerance(case: &Case, name: &str) -> Result<(f64, f64)> {
    let t = case
        .get("/tolerances")
        .and_then(|t| t.get(name))
        .ok_or_else(|| Error::Config(format!("{}: no tolerance for {name}", case.name)))?;
    let atol = t["atol"]
        .as_f64()
        .ok_or_else(|| Error::Config(format!("{}: {name} has no atol", case.name)))?;
    let frac = t["max_fraction_off"].as_f64().unwrap_or(0.0);
    Ok((atol, frac))
}

/// Fails unless every value is within `atol` and at most `max_fraction` of them differ at all.
fn expect_close(name: &str, got: &[f64], want: &[f64], atol: f64, max_fraction: f64) -> Result<()> {
    if got.len() != want.len() {
        return Err(Error::InvalidInput(format!(
            "{name}: {} values, reference has {}",
            got.len(),
            want.len()
        )));
    }
    let mut off = 0usize;
    let mut max = 0f64;
    for (g, w) in got.iter().zip(want) {
        let d = (g - w).abs();
        max = max.max(d);
        if d > 1e-7 {
            off += 1;
        }
    }
    let fraction = off as f64 / got.len() as f64;
    println!(
        "{name}: max |diff| {max:.3e}, {off} of {} values differ",
        got.len()
    );
    if max > atol + 1e-9 || fraction > max_fraction {
        return Err(Error::InvalidInput(format!(
            "{name}: max |diff| {max:e} (allowed {atol:e}), {off} values differ = {:.5}% (allowed \
             {:.5}%)",
            fraction * 100.0,
            max_fraction * 100.0
        )));
    }
    Ok(())
}

/// Runs the check for `case`, with the pre-processed image as a tensor on `device`.
pub fn check_case(case: &Case, device: &Device) -> Result<()> {
    if case.kind != "image_pre" {
        return Err(Error::Config(format!(
            "{}: kind {} is not a media fixture",
            case.name, case.kind
        )));
    }
    let input = case
        .get("/input/file")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::Config(format!("{}: case.json has no input.file", case.name)))?;
    let img = DecodedImage::decode(&MediaSource::Path(case.file(input)))?;
    let mut checked = 0;

    // Every out.* tensor: float32 [1, 3, 1, H, W] in [-1, 1].
    let io = case.io()?;
    let mut names: Vec<&String> = io.keys().filter(|k| k.starts_with("out.")).collect();
    names.sort();
    for name in names {
        let want = &io[name];
        let dims = want.dims();
        let [1, 3, 1, h, w] = dims else {
            return Err(Error::InvalidInput(format!(
                "{}: {name} has shape {dims:?}, expected [1, 3, 1, H, W]",
                case.name
            )));
        };
        let got = img.reference(*w as u32, *h as u32)?;
        let got_t = got.to_tensor(device)?;
        let (atol, frac) = tolerance(case, name)?;
        let g = values(&got_t)?;
        let r = values(want)?;
        expect_close(name, &g, &r, atol, frac)?;
        checked += 1;
    }

    // Every file listed under `tensors` that exists beside case.json: a lossless RGB image.
    let tensors = case
        .get("/tensors")
        .and_then(|t| t.as_object())
        .ok_or_else(|| Error::Config(format!("{}: case.json has no tensors", case.name)))?;
    for name in tensors
        .keys()
        .filter(|k| !k.starts_with("out.") && !k.starts_with("in."))
    {
        let path = case.file(name);
        if !path.is_file() {
            return Err(Error::Config(format!(
                "{}: tensors lists {name}, which is neither in io.safetensors nor a file",
                case.name
            )));
        }
        let want = image::open(&path)
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?
            .to_rgb8();
        let (w, h) = want.dimensions();
        let got = img.reference(w, h)?;
        if (got.width, got.height) != (w, h) {
            return Err(Error::InvalidInput(format!(
                "{name}: produced {}x{}, reference {w}x{h}",
                got.width, got.height
            )));
        }
        let (atol, frac) = tolerance(case, name)?;
        let g: Vec<f64> = got.rgb.iter().map(|&v| f64::from(v)).collect();
        let r: Vec<f64> = want.as_raw().iter().map(|&v| f64::from(v)).collect();
        expect_close(name, &g, &r, atol, frac)?;
        checked += 1;
    }
    if checked == 0 {
        return Err(Error::Config(format!("{}: nothing to check", case.name)));
    }
    Ok(())
}
