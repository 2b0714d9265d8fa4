//! Encoded prompts a long-lived engine keeps: a server asked for several clips of one prompt
//! (other seeds, sizes or lengths), and the negative prompt of every guided clip, skip the text
//! encoder entirely. Least recently used entries go first; keys include the encoder's weights,
//! so a context is never reused for other weights.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use cadence_text::EncodedPrompt;

/// Up to `capacity` encoded prompts, most recently used last.
#[derive(Debug)]
pub(super) struct PromptCache {
    capacity: usize,
    weights: String,
    entries: Mutex<VecDeque<(String, Arc<EncodedPrompt>)>>,
}

impl PromptCache {
    /// An empty cache for the encoder whose weights are identified by `weights`.
    pub(super) fn new(capacity: usize, weights: String) -> Self {
        Self {
            capacity,
            weights,
            entries: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    fn key(&self, prompt: &str) -> String {
        format!("{}\u{0}{prompt}", self.weights)
    }

    /// The encoding of `prompt`, from the cache or from `encode` (then kept).
    pub(super) fn get_or_encode(
        &self,
        prompt: &str,
        encode: impl FnOnce() -> cadence_core::Result<EncodedPrompt>,
    ) -> cadence_core::Result<(Arc<EncodedPrompt>, bool)> {
        let key = self.key(prompt);
        {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = entries.iter().position(|(k, _)| *k == key) {
                let hit = entries.remove(i).expect("the position was just found");
                let prompt = hit.1.clone();
                entries.push_back(hit);
                return Ok((prompt, true));
            }
        }
        let encoded = Arc::new(encode()?);
        if self.capacity > 0 {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if entries.len() == self.capacity {
                entries.pop_front();
            }
            entries.push_back((key, encoded.clone()));
        }
        Ok((encoded, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};

    fn encoded(rows: usize) -> EncodedPrompt {
        let hidden = Tensor::zeros((rows, 4), DType::F32, &Device::Cpu).unwrap();
        EncodedPrompt::from_hidden(&hidden, 8).unwrap()
    }

    #[test]
    fn the_least_recently_used_prompt_goes_first() {
        let cache = PromptCache::new(2, "w".into());
        let calls = std::cell::Cell::new(0);
        let get = |p: &str| {
            cache
                .get_or_encode(p, || {
                    calls.set(calls.get() + 1);
                    Ok(encoded(p.len()))
                })
                .unwrap()
                .1
        };
        assert!(!get("a") && !get("bb"));
        assert!(get("a"), "a hit");
        assert!(!get("ccc"), "evicts bb, the least recently used");
        assert!(get("a") && !get("bb"));
        assert_eq!(calls.get(), 4);
        let none = PromptCache::new(0, "w".into());
        assert!(!none.get_or_encode("a", || Ok(encoded(1))).unwrap().1);
        assert!(!none.get_or_encode("a", || Ok(encoded(1))).unwrap().1);
    }
}
