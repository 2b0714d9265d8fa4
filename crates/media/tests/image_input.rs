//! Reference images in PNG, JPEG and WebP (with EXIF orientation) load as RGB from files and
//! from in-memory bytes alike; broken files fail with a clear message naming the input.

use std::path::Path;

use cadence_media::{load_reference_image, DecodedImage, MediaSource};
use image::{ImageEncoder, Rgb, RgbImage};

fn load_rgb(path: &Path) -> cadence_core::Result<RgbImage> {
    Ok(DecodedImage::decode(&MediaSource::from(path))?
        .rgb()
        .clone())
}

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

#[test]
fn bytes_decode_like_files_and_pixels_like_decoded_files() {
    let dir = tempfile::tempdir().unwrap();
    let img = two_tone();
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
        .write_image(img.as_raw(), 32, 16, image::ExtendedColorType::Rgb8)
        .unwrap();
    let png = dir.path().join("a.png");
    img.save(&png).unwrap();
    let files = [
        (png, std::fs::read(dir.path().join("a.png")).unwrap()),
        (
            dir.path().join("r.jpg"),
            with_exif_orientation(&jpeg_bytes(&img), 6),
        ),
        (dir.path().join("a.webp"), webp),
    ];
    for (path, bytes) in files {
        std::fs::write(&path, &bytes).unwrap();
        let from_file = DecodedImage::decode(&MediaSource::from(path.as_path())).unwrap();
        let from_bytes = DecodedImage::decode(&MediaSource::from(bytes)).unwrap();
        assert_eq!(from_file, from_bytes, "{}", path.display());
        // One decode serves every stage size, identical to decoding per size.
        for (w, h) in [(16, 16), (32, 16), (48, 32)] {
            assert_eq!(
                from_bytes.reference(w, h).unwrap(),
                load_reference_image(&path, w, h).unwrap()
            );
        }
        let pixels = DecodedImage::from_rgb(
            from_file.width(),
            from_file.height(),
            from_file.rgb().as_raw().clone(),
        )
        .unwrap();
        assert_eq!(pixels, from_file);
    }
    let e = DecodedImage::from_rgb(4, 4, vec![0; 47])
        .unwrap_err()
        .to_string();
    assert!(e.contains("47 bytes for 4x4 RGB, which needs 48"), "{e}");
}

#[test]
fn bad_bytes_are_named_by_their_size() {
    let e = DecodedImage::decode(&MediaSource::from(b"GIF89a not really".to_vec()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("(in-memory bytes, 17 B) is Gif, which is not supported"),
        "{e}"
    );
    let e = DecodedImage::decode(&MediaSource::from(Vec::new()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("(in-memory bytes, 0 B) is empty"), "{e}");
}

/// A PNG header that claims 20000 x 20000 pixels is refused before the decoder allocates the
/// 1.2 GB its pixels would take.
#[test]
fn oversized_dimensions_are_refused() {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&[0; 3], 1, 1, image::ExtendedColorType::Rgb8)
        .unwrap();
    // IHDR: 8-byte signature, length, "IHDR", width, height, ..., CRC over type + data.
    png[16..20].copy_from_slice(&20_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let e = DecodedImage::decode(&MediaSource::from(png))
        .unwrap_err()
        .to_string();
    assert!(e.contains("too large") && e.contains("16384"), "{e}");
}
