//! The conditioning (reference) image: decode once (from a file or in-memory bytes), then
//! centre-crop to each target aspect and resize.
//!
//! Matches the reference `encode_image` pre-processing (codecs/SPEC.md §5.1): diffusers
//! `load_image` (EXIF orientation applied, converted to RGB), `resizecrop` (a centred crop with
//! round-half-to-even box coordinates, no resize), then `VideoProcessor.preprocess` (size floored
//! to multiples of 16, Pillow LANCZOS resize, `2·u8/255 − 1`).

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Seek};
use std::path::Path;

use cadence_core::{Error, Result};
use candle_core::{Device, Tensor};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::lanczos::resize_rgb8;
use super::source::MediaSource;

/// The VAE's spatial stride: `preprocess` floors both sides to a multiple of it.
const VAE_SCALE_FACTOR: u32 = 16;

/// A pre-processed reference image, ready for the video VAE's encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// RGB8 pixels, row-major, 3 bytes per pixel.
    pub rgb: Vec<u8>,
}

impl ReferenceImage {
    /// Pixels as float32 in [-1, 1], planar `[3, H, W]` (`2·(u8/255) − 1`, computed in f32 like
    /// the reference).
    pub fn to_unit_range_chw(&self) -> Vec<f32> {
        let plane = (self.width * self.height) as usize;
        let mut out = vec![0f32; 3 * plane];
        for (i, px) in self.rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = 2.0f32 * (f32::from(px[c]) / 255.0f32) - 1.0f32;
            }
        }
        out
    }

    /// The VAE input tensor `[1, 3, 1, H, W]` float32 on `device`.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        let (h, w) = (self.height as usize, self.width as usize);
        Ok(Tensor::from_vec(
            self.to_unit_range_chw(),
            (1, 3, 1, h, w),
            device,
        )?)
    }
}

/// Largest accepted side of an input image, in pixels: twice a 48-megapixel phone photo's long
/// side.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// The most the decoder may allocate for one image: a 48-megapixel photo in RGBA8 (193 MB)
/// fits, and a crafted header of a few bytes cannot make it reserve more (image's own default
/// is 512 MiB).
pub const MAX_IMAGE_BYTES: u64 = 256 << 20;

/// A conditioning image decoded once (RGB8, EXIF orientation applied), from which the
/// pre-processed [`ReferenceImage`] is cut at each stage's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedImage {
    rgb: image::RgbImage,
}

impl DecodedImage {
    /// Decodes a PNG, JPEG or WebP file or in-memory bytes (the format comes from the content,
    /// not the name).
    pub fn decode(source: &MediaSource) -> Result<Self> {
        if source.len()? == 0 {
            return Err(Error::InvalidInput(format!(
                "reference image {source} is empty (0 bytes); give a PNG, JPEG or WebP image"
            )));
        }
        let rgb = match source {
            MediaSource::Path(p) => {
                let file = File::open(p).map_err(|e| Error::io(p, e))?;
                decode_rgb(source, BufReader::new(file))?
            }
            MediaSource::Bytes(b) => decode_rgb(source, Cursor::new(b.as_ref()))?,
        };
        Ok(Self { rgb })
    }

    /// Wraps pixels a caller already decoded: `width x height` RGB8, row-major, 3 bytes each.
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<Self> {
        let want = u64::from(width) * u64::from(height) * 3;
        if width == 0 || height == 0 || rgb.len() as u64 != want {
            return Err(Error::InvalidInput(format!(
                "reference image pixels: {} bytes for {width}x{height} RGB, which needs {want}; \
                 pass width x height x 3 bytes of a non-empty image",
                rgb.len()
            )));
        }
        let rgb = image::RgbImage::from_raw(width, height, rgb)
            .ok_or_else(|| Error::InvalidInput("reference image pixels do not fit".into()))?;
        Ok(Self { rgb })
    }

    /// Width in pixels (after the EXIF orientation).
    pub fn width(&self) -> u32 {
        self.rgb.width()
    }

    /// Height in pixels (after the EXIF orientation).
    pub fn height(&self) -> u32 {
        self.rgb.height()
    }

    /// The RGB8 pixels.
    pub fn rgb(&self) -> &image::RgbImage {
        &self.rgb
    }

    /// Crops and resizes for a `width x height` generation, as the reference pre-processes.
    pub fn reference(&self, width: u32, height: u32) -> Result<ReferenceImage> {
        preprocess(&self.rgb, width, height)
    }
}

/// Decodes an image stream as RGB8 with its EXIF orientation applied.
fn decode_rgb(source: &MediaSource, reader: impl BufRead + Seek) -> Result<image::RgbImage> {
    // Detect the format from the content, not the file name.
    let mut reader = ImageReader::new(reader)
        .with_guessed_format()
        .map_err(|e| source.io_error(e))?;
    let supported = "use PNG, JPEG or WebP";
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP) => {}
        Some(other) => {
            return Err(Error::InvalidInput(format!(
                "reference image {source} is {other:?}, which is not supported; {supported}"
            )))
        }
        None => {
            return Err(Error::InvalidInput(format!(
                "reference image {source} is not in a supported format (PNG, JPEG or WebP); \
                 convert it, e.g. `ffmpeg -i <file> out.png`"
            )))
        }
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    let bad = |e: image::ImageError| match e {
        image::ImageError::Unsupported(u) => Error::InvalidInput(format!(
            "reference image {source} is not supported: {u} ({supported})"
        )),
        image::ImageError::Limits(l) => Error::InvalidInput(format!(
            "reference image {source} is too large to decode ({l}); the limits are \
             {MAX_IMAGE_SIDE} pixels a side and {} MiB decoded: scale it down",
            MAX_IMAGE_BYTES >> 20
        )),
        other => Error::InvalidInput(format!(
            "reference image {source} is corrupt or truncated: {other}"
        )),
    };
    let mut decoder = reader.into_decoder().map_err(bad)?;
    // Checked here because not every decoder honours `max_alloc` (WebP reserves its buffers
    // from the header's size alone).
    if decoder.total_bytes() > MAX_IMAGE_BYTES {
        let (w, h) = decoder.dimensions();
        return Err(Error::InvalidInput(format!(
            "reference image {source} is too large to decode: {w}x{h} {:?} needs {} MiB, the \
             limit is {} MiB; scale it down",
            decoder.color_type(),
            decoder.total_bytes() >> 20,
            MAX_IMAGE_BYTES >> 20
        )));
    }
    let orientation = decoder.orientation().map_err(bad)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(bad)?;
    img.apply_orientation(orientation);
    Ok(img.to_rgb8())
}

/// The centred crop box `(left, top, right, bottom)` of `resizecrop`: the largest box with the
/// target aspect, coordinates rounded half to even as PIL does.
pub fn center_crop_box(width: u32, height: u32, target_w: u32, target_h: u32) -> [u32; 4] {
    let (w, h) = (f64::from(width), f64::from(height));
    let (tw, th) = (f64::from(target_w), f64::from(target_h));
    let (new_w, new_h) = if h / w > th / tw {
        (w, ((w * th) / tw).trunc())
    } else {
        (((h * tw) / th).trunc(), h)
    };
    let round = |v: f64| v.round_ties_even().clamp(0.0, f64::from(u32::MAX)) as u32;
    [
        round((w - new_w) / 2.0),
        round((h - new_h) / 2.0),
        round((w + new_w) / 2.0),
        round((h + new_h) / 2.0),
    ]
}

/// Crops and resizes a decoded RGB image for a `width x height` generation (both floored to
/// multiples of 16, as the reference does).
pub fn preprocess(img: &image::RgbImage, width: u32, height: u32) -> Result<ReferenceImage> {
    let out_w = width - width % VAE_SCALE_FACTOR;
    let out_h = height - height % VAE_SCALE_FACTOR;
    if out_w == 0 || out_h == 0 {
        return Err(Error::InvalidInput(format!(
            "target size {width}x{height} is smaller than {VAE_SCALE_FACTOR} pixels on a side"
        )));
    }
    let (iw, ih) = img.dimensions();
    if iw == 0 || ih == 0 {
        return Err(Error::InvalidInput("reference image has no pixels".into()));
    }
    // resizecrop uses the requested size for the aspect; preprocess resizes to the floored one.
    let [l, t, r, b] = center_crop_box(iw, ih, width, height);
    let (cw, ch) = (r - l, b - t);
    if cw == 0 || ch == 0 {
        return Err(Error::InvalidInput(format!(
            "reference image {iw}x{ih} is too thin to crop to the aspect of {width}x{height}"
        )));
    }
    let mut cropped = Vec::with_capacity((cw * ch * 3) as usize);
    let src = img.as_raw();
    for y in t..b {
        let row = (y * iw) as usize * 3;
        cropped.extend_from_slice(&src[row + l as usize * 3..row + r as usize * 3]);
    }
    let rgb = resize_rgb8(
        &cropped,
        cw as usize,
        ch as usize,
        out_w as usize,
        out_h as usize,
    );
    Ok(ReferenceImage {
        width: out_w,
        height: out_h,
        rgb,
    })
}

/// Loads `path` and pre-processes it for a `width x height` generation (decodes on every
/// call; decode once with [`DecodedImage`] when several sizes are needed).
pub fn load_reference_image(path: &Path, width: u32, height: u32) -> Result<ReferenceImage> {
    DecodedImage::decode(&MediaSource::from(path))?.reference(width, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_box_rounds_half_to_even_like_pil() {
        // SPEC §5.1: 640x450 -> 448x256 requests rows 42.5..407.5 and gets 42..408.
        assert_eq!(center_crop_box(640, 450, 448, 256), [0, 42, 640, 408]);
        assert_eq!(center_crop_box(640, 450, 1920, 1088), [0, 44, 640, 406]);
        // Wider than the target: crop the width.
        assert_eq!(center_crop_box(1000, 100, 100, 100), [450, 0, 550, 100]);
        assert_eq!(center_crop_box(448, 256, 448, 256), [0, 0, 448, 256]);
    }

    #[test]
    fn sizes_are_floored_to_multiples_of_16() {
        let img = image::RgbImage::from_pixel(100, 60, image::Rgb([10, 20, 30]));
        let r = preprocess(&img, 70, 40).unwrap();
        assert_eq!((r.width, r.height), (64, 32));
        assert!(r.rgb.chunks(3).all(|p| p == [10, 20, 30]));
        assert!(preprocess(&img, 8, 40).is_err());
    }
}
