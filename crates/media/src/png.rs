//! PNG output of RGB frames, for debugging decoded video frame by frame.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use cadence_core::{Error, Result};
use image::ImageEncoder;

use crate::atomic_file::AtomicFile;

/// Writes one `width x height` RGB8 image (row-major, 3 bytes per pixel) to `path`, atomically.
pub fn write_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<()> {
    let expected = width as usize * height as usize * 3;
    if rgb.len() != expected || expected == 0 {
        return Err(Error::InvalidInput(format!(
            "{}: {} bytes for a {width}x{height} RGB image (needs {expected})",
            path.display(),
            rgb.len()
        )));
    }
    let mut file = AtomicFile::create(path)?;
    image::codecs::png::PngEncoder::new(BufWriter::new(file.file()))
        .write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))?;
    file.commit()
}

/// Writes a chunk of frames (`T x H x W x 3` bytes) as `frame_000000.png`, ... into `dir`,
/// numbering from `first_index`. Returns the paths written.
pub fn write_png_frames(
    dir: &Path,
    rgb: &[u8],
    width: u32,
    height: u32,
    first_index: u64,
) -> Result<Vec<PathBuf>> {
    let frame = width as usize * height as usize * 3;
    if frame == 0 || !rgb.len().is_multiple_of(frame) {
        return Err(Error::InvalidInput(format!(
            "{} bytes are not a whole number of {width}x{height} RGB frames",
            rgb.len()
        )));
    }
    rgb.chunks_exact(frame)
        .enumerate()
        .map(|(i, f)| {
            let path = dir.join(format!("frame_{:06}.png", first_index + i as u64));
            write_png(&path, f, width, height).map(|()| path)
        })
        .collect()
}
