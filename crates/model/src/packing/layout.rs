//! Sizes of the three segments of a packed sequence.

use super::modality::ModalitySpans;

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
