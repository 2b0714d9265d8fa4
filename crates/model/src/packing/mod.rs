//! Packing video, audio and text into the DiT's single token stream, and back.
//!
//! The DiT sees one sequence `[video tokens | audio rows | text rows]`. This module builds it
//! from latents and text features ([`pack`]), with per-token coordinates for the rope
//! ([`coords`]), modality ids ([`modality`]) and, for frame-window attention, the key ranges
//! each query may see ([`ranges`]). [`unpack`] turns the model's output rows back into video and
//! audio velocities. The super-resolution stage and the sampling pipeline reuse all of it.

pub mod config;
pub mod coords;
pub mod layout;
pub mod modality;
pub mod patchify;
pub mod ranges;

use candle_core::Tensor;

use cadence_core::{Error, Result};
use cadence_kernels::AttentionMask;

pub use config::{CoordsStyle, PackingConfig};
pub use layout::TokenLayout;
pub use modality::{Modality, ModalitySpans};

/// The packed DiT input.
#[derive(Debug, Clone)]
pub struct Packed {
    /// `(L, packed_width)` f32 token rows, each zero-padded on the right.
    pub tokens: Tensor,
    /// Row-major `(L, 9)` coordinates `(t, h, w, T, H, W, ref_T, ref_H, ref_W)` (see
    /// [`coords`]), kept on the host: the rope table is computed from them there.
    pub coords: Vec<f32>,
    /// Sizes of the three segments.
    pub layout: TokenLayout,
    /// Key ranges for frame-window attention (`None` when the receptive field is unlimited).
    pub local_mask: Option<AttentionMask>,
}

/// Packs one sample (batch 1).
///
/// - `video`: `(1, C, T, H, W)` latent, `H` and `W` divisible by the patch size.
/// - `audio`: `(1, A_pad, audio_channels)`; only the first `audio_len` rows are used.
/// - `text`: `(1, Lt_pad, text_channels)`; only the first `text_len` rows are used (the rest is
///   padding and is dropped, not masked).
///
/// `width` is the packed row width (the widest modality's feature count).
pub fn pack(
    video: &Tensor,
    audio: &Tensor,
    audio_len: usize,
    text: &Tensor,
    text_len: usize,
    width: usize,
    config: &PackingConfig,
) -> Result<Packed> {
    config.validate()?;
    let video_rows = patchify::patchify(video, config.patch_size)?;
    let (_, channels, frames, height, w) = video.dims5()?;
    let layout = TokenLayout {
        latent_channels: channels,
        frames,
        rows: height / config.patch_size,
        cols: w / config.patch_size,
        patch: config.patch_size,
        audio: audio_len,
        text: text_len,
    };
    let audio_rows = leading_rows("audio", audio, audio_len)?;
    let text_rows = leading_rows("text", text, text_len)?;
    let mut parts = Vec::with_capacity(3);
    for rows in [video_rows, audio_rows, text_rows] {
        let features = rows.dim(1)?;
        if features > width {
            return Err(Error::InvalidInput(format!(
                "token rows have {features} features but the packed width is {width}"
            )));
        }
        parts.push(rows.pad_with_zeros(1, 0, width - features)?);
    }
    let tokens = Tensor::cat(&parts, 0)?;
    let coords = coords::coords(&layout, config);
    let local_mask = config
        .frame_receptive_field
        .map(|f| ranges::local_attention_mask(&layout, f));
    Ok(Packed {
        tokens,
        coords,
        layout,
        local_mask,
    })
}

/// The first `len` rows of a `(1, rows, features)` tensor, as `(len, features)` f32.
fn leading_rows(what: &str, x: &Tensor, len: usize) -> Result<Tensor> {
    let (batch, rows, _) = x.dims3()?;
    if batch != 1 {
        return Err(Error::InvalidInput(format!(
            "{what} batch must be 1, got {batch}"
        )));
    }
    if len > rows {
        return Err(Error::InvalidInput(format!(
            "{what} length {len} exceeds the {rows} rows provided"
        )));
    }
    Ok(x.squeeze(0)?
        .narrow(0, 0, len)?
        .to_dtype(candle_core::DType::F32)?)
}

/// Splits the model's output rows back into `(1, C, T, H, W)` video and `(1, A, audio_channels)`
/// audio velocities. `video_rows` is `(Nv, C·p²)` in the output's patch-major column order,
/// `audio_rows` is `(A, audio_channels)`.
pub fn unpack(
    video_rows: &Tensor,
    audio_rows: &Tensor,
    layout: &TokenLayout,
) -> Result<(Tensor, Tensor)> {
    let video = patchify::unpatchify(video_rows, layout)?;
    Ok((video, audio_rows.unsqueeze(0)?))
}
