//! Reference images in PNG, JPEG and WebP (with EXIF orientation) load as RGB; broken files fail
//! with a clear message.

use std::path::Path;

use cadence_media::input::image::load_rgb;
use cadence_media::load_reference_image;
use image::{ImageEncoder, Rgb, RgbImage};

/// 32x16: left half red, right half blue.
fn two_tone() -> RgbImage {
    RgbImage::from_fn(32, 16, |x, _| {
        if x < 16 {
            Rgb([220, 20, 20])
        } else {
            Rgb([20, 20, 220])
        }
    })
}

fn jpeg_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// Inserts an EXIF APP1 segment with `Orientation = orientation` after the JPEG SOI marker.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn close(a: &[u8], b: [u8; 3], tol: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tol)
}

#[test]
fn png_jpeg_and_webp_load_and_exif_orientation_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let img = two_tone();

    let png = dir.path().join("a.png");
    img.save(&png).unwrap();
    assert_eq!(load_rgb(&png).unwrap(), img);

    let webp = dir.path().join("a.webp");
    let mut bytes = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut bytes)
        .write_image(img.as_raw(), 32, 16, image::ExtendedColorType::Rgb8)
        .unwrap();
    std::fs::write(&webp, &bytes).unwrap();
    assert_eq!(load_rgb(&webp).unwrap(), img, "lossless WebP is exact");

    let jpg = dir.path().join("a.jpg");
    std::fs::write(&jpg, jpeg_bytes(&img)).unwrap();
    let j = load_rgb(&jpg).unwrap();
    assert_eq!(j.dimensions(), (32, 16));
    assert!(close(&j.get_pixel(4, 8).0, [220, 20, 20], 12));

    // Orientation 6: stored sideways, displayed rotated 90 degrees clockwise.
    let rotated = dir.path().join("rotated.jpg");
    std::fs::write(&rotated, with_exif_orientation(&jpeg_bytes(&img), 6)).unwrap();
    let r = load_rgb(&rotated).unwrap();
    assert_eq!(r.dimensions(), (16, 32));
    assert!(
        close(&r.get_pixel(8, 4).0, [220, 20, 20], 12),
        "top is the old left"
    );
    assert!(
        close(&r.get_pixel(8, 28).0, [20, 20, 220], 12),
        "bottom is the old right"
    );

    // The whole path: crop to 16:16 aspect of a 32x16 image keeps the centre columns 8..24.
    let pre = load_reference_image(&png, 16, 16).unwrap();
    assert_eq!((pre.width, pre.height), (16, 16));
}

fn err_of(path: &Path) -> String {
    load_reference_image(path, 448, 256)
        .err()
        .unwrap_or_else(|| panic!("{} should have been rejected", path.display()))
        .to_string()
}

#[test]
fn broken_images_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let empty = d.join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    assert!(err_of(&empty).contains("empty"));

    let text = d.join("text.png");
    std::fs::write(&text, "not an image at all\n".repeat(20)).unwrap();
    let e = err_of(&text);
    assert!(e.contains("not in a supported format"), "{e}");

    let png = d.join("full.png");
    two_tone().save(&png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    let cut = d.join("truncated.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(&cut);
    assert!(e.contains("corrupt or truncated"), "{e}");

    // A format the loader does not accept (BMP is not enabled).
    let bmp = d.join("a.bmp");
    let mut b = b"BM".to_vec();
    b.extend_from_slice(&[0u8; 60]);
    std::fs::write(&bmp, &b).unwrap();
    let e = err_of(&bmp);
    assert!(e.contains("Bmp, which is not supported"), "{e}");
}
