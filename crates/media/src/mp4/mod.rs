//! MP4 output: H.264 (openh264) video and AAC-LC audio, header first, with an edit list that
//! removes the AAC encoder delay so audio and video start together.
//!
//! One component per file: [`writer`] orchestrates; [`segments`] encodes H.264 in parallel GOP
//! segments; [`avc`] converts Annex B to MP4 samples; [`aac`] wraps the AAC encoders;
//! [`edit_list`] computes and reads `elst`; [`sample_table`] stores the media data and indexes
//! it; [`moov`] builds the header boxes.

pub mod aac;
pub mod avc;
pub mod edit_list;
pub mod moov;
pub mod sample_table;
pub mod segments;
pub mod writer;

pub use aac::AacBackend;
pub use writer::{AudioParams, Mp4Summary, Mp4Writer, VideoParams};
