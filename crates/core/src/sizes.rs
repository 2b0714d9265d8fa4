//! Upper bounds on the sizes a model configuration may state.
//!
//! Configs come from files a user downloaded or edited. A damaged one must be refused before a
//! loader multiplies its numbers (an overflow is a panic in checked builds and a wrong shape
//! otherwise) or lists and reserves tensors by them; `cadence-fuzz` found both.

use crate::{Error, Result};

/// Largest width a config may state (channels, hidden size, head size, multipliers, strides,
/// window sizes): 65536, four times the widest layer of the released models (T5Gemma's
/// 14336-wide MLP). The product of two widths times a kernel volume stays far inside `usize`.
pub const MAX_WIDTH: usize = 1 << 16;

/// Fails naming the first of `fields` of `component` above [`MAX_WIDTH`].
pub fn check_widths<'a>(
    component: &str,
    fields: impl IntoIterator<Item = (&'a str, usize)>,
) -> Result<()> {
    match fields.into_iter().find(|&(_, v)| v > MAX_WIDTH) {
        None => Ok(()),
        Some((name, v)) => Err(Error::Config(format!(
            "{component}: {name} is {v}, more than the {MAX_WIDTH} this loader accepts (no \
             released model comes near); check the config file"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_oversized_field_is_named() {
        assert!(check_widths("X", [("a", 1), ("b", MAX_WIDTH)]).is_ok());
        let e = check_widths("X", [("a", 1), ("b", MAX_WIDTH + 1), ("c", usize::MAX)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("X: b is 65537, more than the 65536"), "{e}");
    }
}
