//! H.264 bitstream glue between an Annex B encoder and the MP4 `avc1` format.
//!
//! Encoders emit Annex B: NAL units separated by `00 00 01` / `00 00 00 01` start codes, with
//! the parameter sets (SPS, PPS) repeated in front of every IDR frame. MP4 wants each sample
//! as 4-byte-length-prefixed NAL units and the parameter sets once, in the `avcC` box of the
//! sample entry. This module does that conversion and builds the `avcC` record.

use cadence_core::{Error, Result};

/// NAL unit types (ITU-T H.264 table 7-1) this module cares about.
const NAL_IDR_SLICE: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// One access unit (frame) converted for MP4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcSample {
    /// Length-prefixed NAL units, parameter sets and access-unit delimiters removed.
    pub data: Vec<u8>,
    /// Whether the frame is an IDR picture (a random access point, `stss` entry).
    pub is_sync: bool,
}

/// The sequence and picture parameter sets of a stream, for the `avcC` box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSets {
    /// Sequence parameter set NAL units (without start codes).
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter set NAL units (without start codes).
    pub pps: Vec<Vec<u8>>,
}

/// Splits an Annex B byte stream into its NAL units (start codes removed).
pub fn split_annex_b(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &start) in starts.iter().enumerate() {
        let mut end = match starts.get(k + 1) {
            Some(&next) => next - 3,
            None => stream.len(),
        };
        // A 4-byte start code and trailing_zero_8bits leave zeros before the next start code.
        while end > start && stream[end - 1] == 0 {
            end -= 1;
        }
        if end > start {
            nals.push(&stream[start..end]);
        }
    }
    nals
}

/// The `nal_unit_type` of a NAL unit.
fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// Converts one encoded frame from Annex B to an MP4 sample and returns the parameter sets it
/// carried (empty unless the frame is an IDR).
pub fn annex_b_to_sample(frame: &[u8]) -> Result<(AvcSample, ParameterSets)> {
    let mut data = Vec::with_capacity(frame.len());
    let mut sets = ParameterSets {
        sps: Vec::new(),
        pps: Vec::new(),
    };
    let mut is_sync = false;
    let mut slices = 0;
    for nal in split_annex_b(frame) {
        match nal_type(nal) {
            NAL_SPS => sets.sps.push(nal.to_vec()),
            NAL_PPS => sets.pps.push(nal.to_vec()),
            NAL_AUD => {}
            t => {
                if t == NAL_IDR_SLICE {
                    is_sync = true;
                }
                if (1..=5).contains(&t) {
                    slices += 1;
                }
                let len = u32::try_from(nal.len()).map_err(|_| {
                    Error::InvalidInput(format!("H.264 NAL unit of {} bytes", nal.len()))
                })?;
                data.extend_from_slice(&len.to_be_bytes());
                data.extend_from_slice(nal);
            }
        }
    }
    if slices == 0 {
        return Err(Error::InvalidInput(
            "the H.264 encoder returned a frame without picture data (a skipped frame)".into(),
        ));
    }
    Ok((AvcSample { data, is_sync }, sets))
}

impl ParameterSets {
    /// The `avcC` (AVCDecoderConfigurationRecord, ISO/IEC 14496-15 §5.3.3) for these sets.
    pub fn avcc(&self) -> Result<mp4_atom::Avcc> {
        let sps = self.sps.first().filter(|s| s.len() >= 4).ok_or_else(|| {
            Error::InvalidInput("the H.264 stream has no sequence parameter set".into())
        })?;
        if self.pps.is_empty() {
            return Err(Error::InvalidInput(
                "the H.264 stream has no picture parameter set".into(),
            ));
        }
        let profile = sps[1];
        // High profiles need the chroma format and bit depths in the record (§5.3.3.1.2).
        let ext = matches!(profile, 100 | 110 | 122 | 144).then(|| mp4_atom::AvccExt {
            chroma_format: 1,
            bit_depth_luma: 8,
            bit_depth_chroma: 8,
            sequence_parameter_sets_ext: Vec::new(),
        });
        Ok(mp4_atom::Avcc {
            configuration_version: 1,
            avc_profile_indication: profile,
            profile_compatibility: sps[2],
            avc_level_indication: sps[3],
            length_size: 4,
            sequence_parameter_sets: self.sps.clone(),
            picture_parameter_sets: self.pps.clone(),
            ext,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let s = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 0,
        ];
        let nals = split_annex_b(&s);
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4, 5]]);
    }

    #[test]
    fn idr_frame_moves_parameter_sets_out() {
        let s = [
            0, 0, 0, 1, 0x67, 100, 0, 40, 9, 0, 0, 0, 1, 0x68, 7, 0, 0, 0, 1, 0x65, 0xaa, 0xbb,
        ];
        let (sample, sets) = annex_b_to_sample(&s).unwrap();
        assert!(sample.is_sync);
        assert_eq!(sample.data, vec![0, 0, 0, 3, 0x65, 0xaa, 0xbb]);
        assert_eq!(sets.sps, vec![vec![0x67, 100, 0, 40, 9]]);
        let avcc = sets.avcc().unwrap();
        assert_eq!(avcc.avc_profile_indication, 100);
        assert_eq!(avcc.avc_level_indication, 40);
        assert!(avcc.ext.is_some());
    }

    #[test]
    fn p_frame_is_not_sync_and_empty_frame_is_an_error() {
        let (sample, sets) = annex_b_to_sample(&[0, 0, 1, 0x41, 9]).unwrap();
        assert!(!sample.is_sync);
        assert!(sets.sps.is_empty());
        assert!(annex_b_to_sample(&[0, 0, 1, 0x67, 1, 2, 3]).is_err());
        assert!(annex_b_to_sample(&[]).is_err());
    }
}
