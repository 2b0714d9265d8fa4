//! Packing video, audio and text into the DiT's single token stream, and back.
//!
//! The DiT sees one sequence `[video tokens | audio rows | text rows]`. This module builds it
//! from latents and text features ([`pack`]), with per-token coordinates for the rope
//! ([`coords`]), modality ids ([`ModalitySpans`]) and, for frame-window attention, the key
//! ranges each query may see ([`local_attention_mask`]). [`unpack`] turns the model's output
//! rows back into video and audio velocities. The super-resolution stage and the sampling
//! pipeline reuse all of it.
//!
//! In order below: packing itself, then its parts: modality ids and spans, the token layout, the
//! packing config, patchify, the rope coordinates and the frame-window ranges.

use std::ops::Range;

use candle_core::Tensor;
use serde::Deserialize;

use cadence_core::{Error, Result};
use cadence_kernels::AttentionMask;

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
    let video_rows = patchify(video, config.patch_size)?;
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
    let coords = coords(&layout, config);
    let local_mask = config
        .frame_receptive_field
        .map(|f| local_attention_mask(&layout, f));
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
    let video = unpatchify(video_rows, layout)?;
    Ok((video, audio_rows.unsqueeze(0)?))
}

// ---------------------------------------------------------------------------------------------
// Modality ids and the contiguous spans each modality occupies.
//
// Every per-token op of a sandwich layer picks the weights of the token's modality ("expert").
// The reference sorts tokens by modality id, runs experts on the groups and undoes the sort.
// Packed sequences are already grouped (video, audio, text), so the model keeps the original
// order and dispatches experts over contiguous spans; [`grouping_permutation`] exists for
// callers that assemble sequences in another order.

/// The three token modalities, numbered as the reference numbers them (and as experts are
/// stacked in sandwich-layer weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Modality {
    /// Video latent patches (id 0).
    Video = 0,
    /// Audio latent frames (id 1).
    Audio = 1,
    /// Text-encoder rows (id 2).
    Text = 2,
}

impl Modality {
    /// All modalities in id order.
    pub const ALL: [Modality; 3] = [Modality::Video, Modality::Audio, Modality::Text];

    /// The reference's integer id.
    pub fn id(self) -> usize {
        self as usize
    }
}

/// Contiguous token ranges of video, audio and text, in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModalitySpans {
    counts: [usize; 3],
}

impl ModalitySpans {
    /// Spans from the token count of each modality (video, audio, text).
    pub fn new(counts: [usize; 3]) -> Self {
        Self { counts }
    }

    /// Spans of a sequence given its per-token ids; fails unless the ids are grouped in
    /// ascending order (use [`grouping_permutation`] first otherwise).
    pub fn from_ids(ids: &[u8]) -> Result<Self> {
        if let Some(i) = ids.windows(2).position(|w| w[0] > w[1]) {
            return Err(Error::InvalidInput(format!(
                "modality ids are not grouped: token {} has id {} after id {}",
                i + 1,
                ids[i + 1],
                ids[i]
            )));
        }
        let mut counts = [0usize; 3];
        for &id in ids {
            let slot = counts
                .get_mut(id as usize)
                .ok_or_else(|| Error::InvalidInput(format!("modality id {id} is not 0, 1 or 2")))?;
            *slot += 1;
        }
        Ok(Self { counts })
    }

    /// Token range of `m`.
    pub fn range(&self, m: Modality) -> Range<usize> {
        let start: usize = self.counts[..m.id()].iter().sum();
        start..start + self.counts[m.id()]
    }

    /// Token count of `m`.
    pub fn count(&self, m: Modality) -> usize {
        self.counts[m.id()]
    }

    /// Total tokens.
    pub fn len(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The spans of the tokens `range` (a piece of the sequence processed on its own): each
    /// modality's count inside the range.
    pub fn slice(&self, range: Range<usize>) -> Self {
        let mut counts = [0usize; 3];
        for m in Modality::ALL {
            let r = self.range(m);
            counts[m.id()] = r
                .end
                .min(range.end)
                .saturating_sub(r.start.max(range.start));
        }
        Self { counts }
    }

    /// Per-token modality ids.
    pub fn ids(&self) -> Vec<u8> {
        Modality::ALL
            .iter()
            .flat_map(|&m| std::iter::repeat_n(m.id() as u8, self.count(m)))
            .collect()
    }
}

/// A stable sort of tokens by modality id: `order[i]` is the original index of the token at
/// grouped position `i`; `inverse` undoes it. Identity for packed sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// Original index of each grouped position.
    pub order: Vec<usize>,
    /// Grouped position of each original index.
    pub inverse: Vec<usize>,
}

/// Groups tokens by modality id, keeping the original order within a modality.
pub fn grouping_permutation(ids: &[u8]) -> Grouping {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i]);
    let mut inverse = vec![0; ids.len()];
    for (pos, &orig) in order.iter().enumerate() {
        inverse[orig] = pos;
    }
    Grouping { order, inverse }
}

// ---------------------------------------------------------------------------------------------
// Sizes of the three segments of a packed sequence.

/// How many tokens each modality contributes, and the video token grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLayout {
    /// Latent channels of the video (48).
    pub latent_channels: usize,
    /// Latent frames `T` (one token layer per frame).
    pub frames: usize,
    /// Token rows per frame (`latent height / patch`).
    pub rows: usize,
    /// Token columns per frame (`latent width / patch`).
    pub cols: usize,
    /// Spatial patch edge.
    pub patch: usize,
    /// Audio rows `A`.
    pub audio: usize,
    /// Text rows `Lt`.
    pub text: usize,
}

impl TokenLayout {
    /// Video tokens per latent frame.
    pub fn tokens_per_frame(&self) -> usize {
        self.rows * self.cols
    }

    /// All video tokens `Nv = T·rows·cols`.
    pub fn video_tokens(&self) -> usize {
        self.frames * self.tokens_per_frame()
    }

    /// Sequence length `L`.
    pub fn len(&self) -> usize {
        self.video_tokens() + self.audio + self.text
    }

    /// Whether the sequence is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token index ranges of the three modalities.
    pub fn spans(&self) -> ModalitySpans {
        let v = self.video_tokens();
        ModalitySpans::new([v, self.audio, self.text])
    }
}

// ---------------------------------------------------------------------------------------------
// How latents become tokens: patch size, coordinate style, attention window.

/// Which coordinate convention audio and text rows use (video is the same in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum CoordsStyle {
    /// Used by the super-resolution models: audio time spans the video's latent frames, text
    /// sits at `text_offset + k`.
    #[serde(rename = "v1")]
    V1,
    /// Used by the base and distilled models: audio time runs at about a quarter step per frame,
    /// text sits at negative times and is not rotated.
    #[serde(rename = "v2")]
    V2,
}

/// The reference's `DataProxyConfig`, reduced to what inference reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackingConfig {
    /// Spatial patch edge (2): a token covers `patch × patch` latent pixels.
    pub patch_size: usize,
    /// Frames of video attended by a video query on each side in local-attention layers;
    /// `None` means unlimited (the reference's `-1`). Counted in latent frames.
    pub frame_receptive_field: Option<usize>,
    /// Coordinate convention for audio and text.
    pub coords_style: CoordsStyle,
    /// Time offset of text rows under v1 coords.
    pub text_offset: i64,
}

impl PackingConfig {
    /// Base and distilled models: v2 coords, window 11 (only used by local layers).
    pub fn base() -> Self {
        Self {
            patch_size: 2,
            frame_receptive_field: Some(11),
            coords_style: CoordsStyle::V2,
            text_offset: 0,
        }
    }

    /// Super-resolution models: the pipeline forces v1 coords.
    pub fn super_resolution() -> Self {
        Self {
            coords_style: CoordsStyle::V1,
            ..Self::base()
        }
    }

    /// Reads the reference's `data_proxy_config` JSON object. Only `t_patch_size` 1 is
    /// supported (every published model uses it).
    pub fn from_reference_json(value: &serde_json::Value) -> Result<Self> {
        let raw: RawDataProxyConfig = serde_json::from_value(value.clone())
            .map_err(|e| Error::Config(format!("data_proxy_config: {e}")))?;
        if raw.t_patch_size.unwrap_or(1) != 1 {
            return Err(Error::Config(format!(
                "data_proxy_config.t_patch_size {} is not supported (only 1)",
                raw.t_patch_size.unwrap_or(1)
            )));
        }
        let d = Self::base();
        let window = raw.frame_receptive_field.unwrap_or(11);
        let config = Self {
            patch_size: raw.patch_size.unwrap_or(d.patch_size),
            frame_receptive_field: match window {
                -1 => None,
                f if f >= 0 => Some(f as usize),
                f => {
                    return Err(Error::Config(format!(
                        "frame_receptive_field {f} must be -1 or ≥ 0"
                    )))
                }
            },
            coords_style: raw.coords_style.unwrap_or(d.coords_style),
            text_offset: raw.text_offset.unwrap_or(d.text_offset),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values the packer relies on.
    pub fn validate(&self) -> Result<()> {
        if self.patch_size == 0 {
            return Err(Error::Config("patch_size must be at least 1".into()));
        }
        Ok(())
    }
}

/// The reference's `DataProxyConfig` JSON, including fields inference ignores.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataProxyConfig {
    t_patch_size: Option<usize>,
    patch_size: Option<usize>,
    frame_receptive_field: Option<i64>,
    coords_style: Option<CoordsStyle>,
    text_offset: Option<i64>,
    /// Ignored by the reference's data proxy, which always uses "extra" interpolation.
    #[serde(rename = "spatial_rope_interpolation")]
    _spatial_rope_interpolation: Option<serde_json::Value>,
    /// Unused at inference.
    #[serde(rename = "ref_audio_offset")]
    _ref_audio_offset: Option<serde_json::Value>,
}

// ---------------------------------------------------------------------------------------------
// Video latents to token rows and back.
//
// Input tokens are **channel-major**: feature `c·p² + a·p + b` of the token at `(t, i, j)` holds
// `x[c, t, p·i+a, p·j+b]`. Output rows are **patch-major**: column `(a·p + b)·C + c` goes to
// `v[c, t, p·i+a, p·j+b]`. The two orders differ in the reference, and mixing them up
// scrambles the video, so each direction has its own function.

/// `(1, C, T, H, W)` latent to `(T·H/p·W/p, C·p²)` token rows (raster order over `t, i, j`).
pub fn patchify(video: &Tensor, p: usize) -> Result<Tensor> {
    let (batch, c, t, h, w) = video.dims5()?;
    if batch != 1 {
        return Err(Error::InvalidInput(format!(
            "video batch must be 1, got {batch}"
        )));
    }
    if h % p != 0 || w % p != 0 {
        return Err(Error::InvalidInput(format!(
            "latent height {h} and width {w} must be multiples of the patch size {p}"
        )));
    }
    let (hp, wp) = (h / p, w / p);
    // (C, T, hp, a, wp, b) -> (T, hp, wp, C, a, b)
    let x = video
        .to_dtype(candle_core::DType::F32)?
        .reshape((c, t, hp, p, wp, p))?
        .permute((1, 2, 4, 0, 3, 5))?
        .contiguous()?;
    Ok(x.reshape((t * hp * wp, c * p * p))?)
}

/// `(Nv, p²·C)` patch-major output rows to a `(1, C, T, H, W)` latent.
pub fn unpatchify(rows: &Tensor, layout: &TokenLayout) -> Result<Tensor> {
    let TokenLayout {
        latent_channels: c,
        frames: t,
        rows: hp,
        cols: wp,
        patch: p,
        ..
    } = *layout;
    if rows.dims() != [layout.video_tokens(), c * p * p] {
        return Err(Error::InvalidInput(format!(
            "video output rows {:?} do not match the layout ({} tokens × {} features)",
            rows.dims(),
            layout.video_tokens(),
            c * p * p
        )));
    }
    // (T, hp, wp, a, b, C) -> (C, T, hp, a, wp, b)
    let x = rows
        .reshape((t, hp, wp, p, p, c))?
        .permute((5, 0, 1, 3, 2, 4))?
        .contiguous()?;
    Ok(x.reshape((1, c, t, hp * p, wp * p))?)
}

// ---------------------------------------------------------------------------------------------
// Per-token coordinates that drive the Fourier rope.
//
// Each token gets 9 values `(t, h, w, T, H, W, ref_T, ref_H, ref_W)`: its position, the size of
// its modality's grid, and the reference grid the position is scaled to (see `crate::rope`).
//
// | rows  | t, h, w | sizes | refs (v2) | refs (v1) |
// |-------|---------|-------|-----------|-----------|
// | video | t, i, j | T, rows, cols | T, rows, cols | T, rows, cols |
// | audio | a, 0, 0 | A, 1, 1 | (A-1)/4+1, 1, 1 | T, 1, 1 |
// | text  | v2: k-Lt; v1: k+offset; 0, 0 | Lt, 1, 1 | 1, 1, 1 | 2, 1, 1 |
//
// Video spatial refs always equal the sizes (the reference hard-codes its "extra"
// interpolation).

/// Columns per token.
pub const COORD_COLUMNS: usize = 9;

/// Audio latent frames per video latent frame (the VAE's temporal stride), which sets the v2
/// audio time reference `(A-1)/4 + 1`.
const AUDIO_FRAMES_PER_LATENT_FRAME: usize = 4;

/// Row-major `(L, 9)` coordinates for `layout`.
pub fn coords(layout: &TokenLayout, config: &PackingConfig) -> Vec<f32> {
    let mut out = Vec::with_capacity(layout.len() * COORD_COLUMNS);
    let (t_size, h_size, w_size) = (layout.frames, layout.rows, layout.cols);
    for t in 0..t_size {
        for i in 0..h_size {
            for j in 0..w_size {
                let grid = [t_size, h_size, w_size].map(|v| v as f32);
                out.extend([t as f32, i as f32, j as f32]);
                out.extend(grid);
                out.extend(grid);
            }
        }
    }
    let audio_ref = match config.coords_style {
        CoordsStyle::V2 => {
            (layout.audio.saturating_sub(1) / AUDIO_FRAMES_PER_LATENT_FRAME + 1) as f32
        }
        CoordsStyle::V1 => t_size as f32,
    };
    for a in 0..layout.audio {
        out.extend([
            a as f32,
            0.,
            0.,
            layout.audio as f32,
            1.,
            1.,
            audio_ref,
            1.,
            1.,
        ]);
    }
    let lt = layout.text as i64;
    for k in 0..lt {
        let (t, text_ref) = match config.coords_style {
            CoordsStyle::V2 => (k - lt, 1.0),
            CoordsStyle::V1 => (k + config.text_offset, 2.0),
        };
        out.extend([t as f32, 0., 0., lt as f32, 1., 1., text_ref, 1., 1.]);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Key ranges of the frame-window ("local") attention used by the 1080p super-resolution model.
//
// With `tpf` video tokens per latent frame, `Nv` video tokens, `L` tokens and window `f`:
// - each frame `i`'s queries see video frames `i-f ..= i+f` (clipped to the video segment);
// - every video query also sees all audio and text;
// - audio and text queries see everything.
//
// The pairs are produced in exactly the reference's order, so they compare row for row with
// its `q_ranges`/`k_ranges`.

/// The frame-window attention mask for `layout` with a window of `window` frames per side.
pub fn local_attention_mask(layout: &TokenLayout, window: usize) -> AttentionMask {
    let tpf = layout.tokens_per_frame();
    let nv = layout.video_tokens();
    let len = layout.len();
    let mut pairs = Vec::with_capacity(layout.frames + 2);
    for i in 0..layout.frames {
        let lo = i.saturating_sub(window) * tpf;
        let hi = ((i + window + 1) * tpf).min(nv);
        pairs.push((i * tpf..(i + 1) * tpf, lo.min(nv)..hi));
    }
    pairs.push((0..nv, nv..len));
    pairs.push((nv..len, 0..len));
    AttentionMask::new(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    // modality
    #[test]
    fn spans_and_ids_round_trip() {
        let spans = ModalitySpans::new([4, 2, 3]);
        assert_eq!(spans.range(Modality::Audio), 4..6);
        assert_eq!(spans.range(Modality::Text), 6..9);
        assert_eq!(ModalitySpans::from_ids(&spans.ids()).unwrap(), spans);
        assert_eq!(spans.slice(3..7), ModalitySpans::new([1, 2, 1]));
        assert_eq!(spans.slice(0..9), spans);
        assert_eq!(spans.slice(5..5), ModalitySpans::new([0, 0, 0]));
    }

    #[test]
    fn ungrouped_ids_are_rejected_with_the_position() {
        let err = ModalitySpans::from_ids(&[0, 2, 1]).unwrap_err().to_string();
        assert!(err.contains("token 2"), "{err}");
        assert!(ModalitySpans::from_ids(&[0, 3]).is_err());
    }

    #[test]
    fn grouping_is_stable_and_invertible() {
        let ids = [2, 0, 1, 0, 2, 1];
        let g = grouping_permutation(&ids);
        assert_eq!(g.order, vec![1, 3, 2, 5, 0, 4]);
        let grouped: Vec<u8> = g.order.iter().map(|&i| ids[i]).collect();
        assert_eq!(grouped, vec![0, 0, 1, 1, 2, 2]);
        for (orig, &pos) in g.inverse.iter().enumerate() {
            assert_eq!(g.order[pos], orig);
        }
        assert_eq!(grouping_permutation(&[0, 0, 1, 2]).order, vec![0, 1, 2, 3]);
    }

    // patchify
    #[test]
    fn feature_orders_are_channel_major_in_and_patch_major_out() {
        let (c, t, h, w, p) = (3, 2, 4, 6, 2);
        let n = c * t * h * w;
        let video = Tensor::arange(0f32, n as f32, &Device::Cpu)
            .unwrap()
            .reshape((1, c, t, h, w))
            .unwrap();
        let rows = patchify(&video, p).unwrap();
        let value =
            |ci: usize, ti: usize, y: usize, x: usize| (((ci * t + ti) * h + y) * w + x) as f32;
        let r = rows.to_vec2::<f32>().unwrap();
        // token (t=1, i=1, j=2) in a 2x3 token grid, feature c*4 + a*2 + b
        let (ti, i, j) = (1, 1, 2);
        let tok = (ti * 2 + i) * 3 + j;
        for ci in 0..c {
            for a in 0..p {
                for b in 0..p {
                    assert_eq!(
                        r[tok][ci * 4 + a * 2 + b],
                        value(ci, ti, 2 * i + a, 2 * j + b)
                    );
                }
            }
        }
        // Output rows in patch-major order reproduce the latent.
        let layout = TokenLayout {
            latent_channels: c,
            frames: t,
            rows: h / p,
            cols: w / p,
            patch: p,
            audio: 0,
            text: 0,
        };
        let patch_major = rows
            .reshape((12, c, p * p))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((12, c * p * p))
            .unwrap();
        let back = unpatchify(&patch_major, &layout).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            video.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    // ranges
    fn layout(frames: usize) -> TokenLayout {
        TokenLayout {
            latent_channels: 48,
            frames,
            rows: 1,
            cols: 2,
            patch: 2,
            audio: 3,
            text: 2,
        }
    }

    #[test]
    fn frame_window_clips_to_the_video_segment() {
        let mask = local_attention_mask(&layout(4), 1);
        let pairs = mask.pairs();
        assert_eq!(pairs[0], (0..2, 0..4));
        assert_eq!(pairs[1], (2..4, 0..6));
        assert_eq!(pairs[3], (6..8, 4..8));
        assert_eq!(pairs[4], (0..8, 8..13));
        assert_eq!(pairs[5], (8..13, 0..13));
    }

    #[test]
    fn video_queries_see_their_window_plus_audio_and_text() {
        let l = layout(4);
        let dense = local_attention_mask(&l, 1).dense(l.len());
        let row = |i: usize| -> Vec<bool> { dense[i * 13..(i + 1) * 13].to_vec() };
        // Frame 3 (tokens 6, 7) sees frames 2-3 and all 5 audio/text tokens, not frames 0-1.
        assert_eq!(
            row(6),
            [false, false, false, false, true, true, true, true, true, true, true, true, true]
        );
        assert!(row(9).iter().all(|&b| b), "audio sees everything");
    }
}
