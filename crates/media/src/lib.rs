//! Media I/O of Cadence, with no ffmpeg at run time: generated clips out as one MP4 that plays
//! everywhere, reference image and audio in, plus WAV and PNG writers for debugging.
//!
//! * [`Mp4Writer`] streams RGB frames and f32 audio into H.264 (openh264) + AAC-LC in an MP4
//!   with the header (`moov`) first and an edit list that removes the AAC encoder delay, so
//!   audio and video start together in ffmpeg, browsers and QuickTime. Long clips are encoded
//!   in parallel GOP segments.
//! * [`DecodedImage`] decodes a PNG/JPEG/WebP file or in-memory bytes once and reproduces the
//!   reference pipeline's crop and Pillow LANCZOS resize bit for bit at each size;
//!   [`DecodedAudio`] decodes WAV/FLAC/MP3/M4A once, to mono 51.2 kHz for the model and to
//!   stereo for the clip.
//! * Every file is written to a temporary file in the destination folder and renamed into place
//!   only when complete ([`atomic_file`]).
//!
//! # Licences
//!
//! * openh264 (BSD-2-Clause) is compiled from source. Cisco's H.264 patent licence covers only
//!   Cisco's prebuilt binaries, so a source build carries **no H.264 patent licence**; whoever
//!   distributes products built from this crate must consider that.
//! * The default AAC encoder is `syom` (MIT, pure Rust). The optional cargo feature **`fdk-aac`**
//!   adds Fraunhofer FDK AAC (`AacBackend::Fdk`); its code is under the *Software License for
//!   The Fraunhofer FDK AAC Codec Library for Android*, which is not a free-software licence,
//!   is GPL-incompatible and grants no patent rights, although the crate's metadata says MIT.
//!   It is therefore opt-in only. AAC patent status was not assessed.
//! * symphonia (MPL-2.0, file-level copyleft, fine to link), image, rubato, mp4-atom, hound,
//!   tempfile: MIT and/or Apache-2.0.
//!
//! Building with `nasm` on the PATH enables openh264's x86 assembly (2.2x faster encoding,
//! byte-identical output; both measured in BENCHMARKS.md); without it
//! openh264 silently builds plain C. `OPENH264_NO_ASM=1` forces the C build.

#![warn(missing_docs)]

pub mod atomic_file;
pub mod input;
pub mod mp4;
pub mod png;
pub mod wav;

pub use input::{
    load_reference_audio, load_reference_image, load_stereo_audio, AudioInputOptions, DecodedAudio,
    DecodedImage, MediaSource, ReferenceAudio, ReferenceImage,
};
pub use mp4::{AacBackend, AudioParams, Mp4Summary, Mp4Writer, VideoParams};
pub use png::{write_png, write_png_frames};
pub use wav::{write_wav, WavFormat};
