//! Mutations of valid seed inputs, as proptest values.
//!
//! A case is a seed and a short list of [`Mutation`]s applied in order. Proptest draws them
//! from a seeded RNG and, when a case fails, shrinks the list (fewer, simpler mutations) to a
//! minimal failing input. The mutations are those of byte-level fuzzers (bit flips, byte sets,
//! truncation, insertion, deletion, duplicated and spliced chunks) plus structure-aware ones:
//! integers of every width and byte order set to boundary values (the length, count and offset
//! fields of binary formats), and numbers in text (JSON, TOML) replaced by extremes.

use proptest::prelude::*;

/// A position in an input of any length: a fraction of it in 64-bit fixed point (shrinks
/// towards the start).
#[derive(Debug, Clone, Copy)]
pub struct Index(pub u64);

impl Index {
    /// The position in an input of `len > 0` bytes.
    pub fn index(self, len: usize) -> usize {
        ((u128::from(self.0) * len as u128) >> 64) as usize
    }
}

fn index() -> impl Strategy<Value = Index> {
    any::<u64>().prop_map(Index)
}

/// Boundary values for integer fields: zero, one, sign bits, all ones, powers of two.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Replacements for numbers in text formats.
const EXTREME_NUMBERS: [&str; 10] = [
    "0",
    "-1",
    "1e309",
    "-0.0",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999999",
    "NaN",
    "1.5",
    "65536",
];

/// One edit of an input.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flips one bit.
    FlipBit(Index, u8),
    /// Sets one byte.
    SetByte(Index, u8),
    /// Writes a boundary value as a `width`-byte integer, little- or big-endian.
    Integer {
        /// Where.
        at: Index,
        /// 1, 2, 4 or 8 bytes.
        width: usize,
        /// An index into the boundary values.
        value: usize,
        /// Byte order.
        big_endian: bool,
    },
    /// Cuts the input short.
    Truncate(Index),
    /// Inserts bytes.
    Insert(Index, Vec<u8>),
    /// Removes up to `len` bytes.
    Delete(Index, usize),
    /// Copies a chunk of the input to another place (a duplicated record or box).
    Duplicate {
        /// Start of the chunk.
        from: Index,
        /// Its length.
        len: usize,
        /// Where the copy goes.
        to: Index,
    },
    /// Replaces the tail with a chunk of another seed of the same target.
    Splice {
        /// Which seed.
        seed: Index,
        /// Start of the chunk in that seed.
        from: Index,
        /// Where the chunk goes in the input.
        to: Index,
    },
    /// Replaces the n-th decimal number of a text input with an extreme.
    Number(Index, usize),
}

/// Any mutation, sized for inputs of a few kilobytes.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (index(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        (index(), any::<u8>()).prop_map(|(at, v)| Mutation::SetByte(at, v)),
        (
            index(),
            prop::sample::select(vec![1usize, 2, 4, 8]),
            0..INTERESTING.len(),
            any::<bool>()
        )
            .prop_map(|(at, width, value, big_endian)| Mutation::Integer {
                at,
                width,
                value,
                big_endian
            }),
        index().prop_map(Mutation::Truncate),
        (index(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, b)| Mutation::Insert(at, b)),
        (index(), 1usize..64).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (index(), 1usize..256, index()).prop_map(|(from, len, to)| Mutation::Duplicate {
            from,
            len,
            to
        }),
        (index(), index(), index()).prop_map(|(seed, from, to)| Mutation::Splice {
            seed,
            from,
            to
        }),
        (index(), 0..EXTREME_NUMBERS.len()).prop_map(|(at, n)| Mutation::Number(at, n)),
    ]
}

/// `seed` with `mutations` applied in order; `others` are the target's seeds for splicing.
pub fn apply(seed: &[u8], mutations: &[Mutation], others: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in mutations {
        apply_one(&mut b, m, others);
    }
    b
}

fn apply_one(b: &mut Vec<u8>, m: &Mutation, others: &[Vec<u8>]) {
    // Positions index the current length (and one past it for insertions).
    let pos = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len) };
    match m {
        Mutation::FlipBit(at, bit) if !b.is_empty() => {
            let i = pos(at, b.len());
            b[i] ^= 1 << bit;
        }
        Mutation::SetByte(at, v) if !b.is_empty() => {
            let i = pos(at, b.len());
            b[i] = *v;
        }
        Mutation::Integer {
            at,
            width,
            value,
            big_endian,
        } if b.len() >= *width => {
            let i = pos(at, b.len() - width + 1);
            let v = INTERESTING[*value].to_le_bytes();
            let mut bytes = v[..*width].to_vec();
            if *big_endian {
                bytes.reverse();
            }
            b[i..i + width].copy_from_slice(&bytes);
        }
        Mutation::Truncate(at) => {
            let i = pos(at, b.len());
            b.truncate(i);
        }
        Mutation::Insert(at, bytes) => {
            let i = pos(at, b.len() + 1);
            b.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete(at, len) if !b.is_empty() => {
            let i = pos(at, b.len());
            let end = (i + len).min(b.len());
            b.drain(i..end);
        }
        Mutation::Duplicate { from, len, to } if !b.is_empty() => {
            let start = pos(from, b.len());
            let chunk = b[start..(start + len).min(b.len())].to_vec();
            let i = pos(to, b.len() + 1);
            b.splice(i..i, chunk);
        }
        Mutation::Splice { seed, from, to } if !others.is_empty() => {
            let other = &others[seed.index(others.len())];
            let start = pos(from, other.len());
            let i = pos(to, b.len() + 1);
            b.truncate(i);
            b.extend_from_slice(&other[start..]);
        }
        Mutation::Number(at, n) => {
            let numbers = number_spans(b);
            if !numbers.is_empty() {
                let (s, e) = numbers[at.index(numbers.len())];
                b.splice(s..e, EXTREME_NUMBERS[*n].bytes());
            }
        }
        _ => {}
    }
}

/// Byte ranges of the runs of ASCII digits (with a leading `-`) in `b`.
fn number_spans(b: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = if i > 0 && b[i - 1] == b'-' { i - 1 } else { i };
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            spans.push((start, i));
        } else {
            i += 1;
        }
    }
    spans
}

/// Recomputes the CRC of every whole chunk of a PNG, so that mutated headers (sizes, bit
/// depths) reach the decoder instead of failing the checksum.
pub fn repair_png_crcs(b: &mut [u8]) {
    let mut at = 8;
    while at + 12 <= b.len() {
        let len = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
        let Some(end) = (at + 8).checked_add(len).filter(|e| e + 4 <= b.len()) else {
            break;
        };
        let crc = crc32fast::hash(&b[at + 4..end]);
        b[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        at = end + 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_text_are_replaced() {
        let out = apply(
            br#"{"a": 12, "b": -3}"#,
            &[Mutation::Number(Index(0), 5)],
            &[],
        );
        assert_eq!(out, br#"{"a": 18446744073709551616, "b": -3}"#);
        assert_eq!(number_spans(b"x-12y3"), vec![(1, 4), (5, 6)]);
    }

    #[test]
    fn integers_are_written_in_both_byte_orders() {
        let m = |big_endian| Mutation::Integer {
            at: Index(0),
            width: 4,
            value: 8, // 0x8000_0000
            big_endian,
        };
        assert_eq!(apply(&[0; 4], &[m(false)], &[]), [0, 0, 0, 0x80]);
        assert_eq!(apply(&[0; 4], &[m(true)], &[]), [0x80, 0, 0, 0]);
    }

    #[test]
    fn png_crcs_are_repaired() {
        let mut png = Vec::new();
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut png),
            &[1, 2, 3],
            1,
            1,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
        let good = png.clone();
        png[16..20].copy_from_slice(&7u32.to_be_bytes()); // IHDR width
        repair_png_crcs(&mut png);
        assert_ne!(
            png[29..33],
            good[29..33],
            "the IHDR checksum follows the new width"
        );
        png[16..20].copy_from_slice(&1u32.to_be_bytes());
        repair_png_crcs(&mut png);
        assert_eq!(png, good);
    }
}
