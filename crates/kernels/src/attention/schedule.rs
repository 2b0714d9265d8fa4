//! The block-sparse tile schedule of the attention kernels.
//!
//! The GPU kernels split the `L × L` score matrix of one head into tiles of `block_q` queries by
//! `block_k` keys. An [`AttentionMask`] leaves many of those tiles entirely masked (the 1080p
//! frame-window pattern skips about half of them), so instead of computing and masking them, each
//! query tile gets the list of key tiles it must visit, built here on the CPU:
//!
//! - a tile none of whose (query, key) pairs is allowed is never visited;
//! - a tile all of whose pairs are allowed (and inside the sequence) is *full*: the kernel runs
//!   it with no masking at all; runs of consecutive full tiles are stored as one [`KeySpan`];
//! - every other visited tile is *partial*: it is a span of one tile that carries the
//!   [`MaskRect`]s of its allowed pairs, and the kernel sets every score outside them to `-inf`.
//!
//! Each allowed pair lies in exactly one visited tile and inside exactly one of that tile's
//! rectangles (or the tile is full), so the kernel's online softmax sees every allowed key of a
//! query once. The flat arrays ([`TileSchedule::span_offsets`], [`TileSchedule::spans`],
//! [`TileSchedule::rects`]) are what the kernel reads; their layout is mirrored by the structs
//! of `kernels/attention_common.cuh`.

use std::fmt;
use std::ops::Range;

use super::AttentionMask;

/// A run of consecutive key tiles `[tile_begin, tile_end)` one query tile visits.
///
/// `rect_begin == rect_end` marks full tiles (no masking). A partial tile is a span of exactly
/// one tile whose allowed pairs are the rectangles `rects[rect_begin..rect_end]`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpan {
    /// First key tile of the run.
    pub tile_begin: u32,
    /// One past the last key tile of the run.
    pub tile_end: u32,
    /// First mask rectangle of a partial tile.
    pub rect_begin: u32,
    /// One past its last mask rectangle (equal to `rect_begin` for full tiles).
    pub rect_end: u32,
}

impl KeySpan {
    /// Whether the span's tiles are run without masking.
    pub fn is_full(&self) -> bool {
        self.rect_begin == self.rect_end
    }

    /// The key tiles of the span.
    pub fn tiles(&self) -> Range<usize> {
        self.tile_begin as usize..self.tile_end as usize
    }
}

// The kernels read these arrays as `KeySpan` / `MaskRect` of attention_common.cuh (16 bytes).
const _: () = assert!(std::mem::size_of::<KeySpan>() == 16);
const _: () = assert!(std::mem::size_of::<MaskRect>() == 16);

/// Allowed (query, key) pairs of a partial tile: queries `[q_begin, q_end)` by keys
/// `[k_begin, k_end)`, in absolute token indices, clipped to the tile.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskRect {
    /// First query row.
    pub q_begin: u32,
    /// One past the last query row.
    pub q_end: u32,
    /// First key.
    pub k_begin: u32,
    /// One past the last key.
    pub k_end: u32,
}

impl MaskRect {
    /// Whether the pair (query `q`, key `k`) lies inside the rectangle.
    pub fn contains(&self, q: usize, k: usize) -> bool {
        (self.q_begin as usize..self.q_end as usize).contains(&q)
            && (self.k_begin as usize..self.k_end as usize).contains(&k)
    }

    /// Number of pairs inside.
    pub fn area(&self) -> u64 {
        u64::from(self.q_end - self.q_begin) * u64::from(self.k_end - self.k_begin)
    }
}

/// Why a mask cannot be scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// Query `row` may attend to no key. The reference softmax over no keys gives NaN, which a
    /// kernel that skips masked tiles cannot reproduce, so such masks stay on the reference.
    RowWithoutKeys {
        /// The first such query.
        row: usize,
    },
    /// The sequence or a tile is too long for the kernel's 32-bit indices.
    TooLong {
        /// The sequence length.
        len: usize,
    },
    /// A tile dimension is zero.
    EmptyTile,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RowWithoutKeys { row } => write!(
                f,
                "query {row} may attend to no key under this attention mask (its softmax is undefined)"
            ),
            Self::TooLong { len } => {
                write!(f, "sequence of {len} tokens is too long for 32-bit tile indices")
            }
            Self::EmptyTile => write!(f, "attention tiles must have at least one row and column"),
        }
    }
}

impl std::error::Error for ScheduleError {}

/// Query rows that share one set of allowed keys: rows `rows` may attend to the sorted,
/// disjoint, non-adjacent key ranges `keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RowSegment {
    rows: Range<usize>,
    keys: Vec<Range<usize>>,
}

/// Splits `[0, len)` into the maximal row ranges on which the mask's key set is constant.
///
/// The boundaries of the pairs' query ranges cut the rows into pieces that every query range
/// either contains or misses, so each piece's keys are the union of the key ranges of the
/// pairs whose query range contains it. This is O(pieces × pairs); the masks of the model have
/// a few dozen pairs.
fn row_segments(
    mask: Option<&AttentionMask>,
    len: usize,
) -> Result<Vec<RowSegment>, ScheduleError> {
    let Some(mask) = mask else {
        return Ok(vec![RowSegment {
            rows: 0..len,
            keys: std::iter::once(0..len).collect(),
        }]);
    };
    let clip = |r: &Range<usize>| r.start.min(len)..r.end.min(len);
    let mut cuts = vec![0, len];
    for (q, _) in mask.pairs() {
        let q = clip(q);
        cuts.extend([q.start, q.end]);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut segments = Vec::with_capacity(cuts.len());
    for w in cuts.windows(2) {
        let rows = w[0]..w[1];
        let mut keys: Vec<Range<usize>> = mask
            .pairs()
            .iter()
            .filter(|(q, _)| {
                let q = clip(q);
                q.start <= rows.start && rows.end <= q.end
            })
            .map(|(_, k)| clip(k))
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort_unstable_by_key(|k| k.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(keys.len());
        for k in keys {
            match merged.last_mut() {
                Some(last) if k.start <= last.end => last.end = last.end.max(k.end),
                _ => merged.push(k),
            }
        }
        if merged.is_empty() {
            return Err(ScheduleError::RowWithoutKeys { row: rows.start });
        }
        // Neighbours with the same keys are one segment: fewer rectangles per partial tile.
        match segments.last_mut() {
            Some(RowSegment { rows: prev, keys }) if *keys == merged => prev.end = rows.end,
            _ => segments.push(RowSegment { rows, keys: merged }),
        }
    }
    Ok(segments)
}

/// The key tiles every query tile visits, with the masks of the partial ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileSchedule {
    len: usize,
    block_q: usize,
    block_k: usize,
    span_offsets: Vec<u32>,
    spans: Vec<KeySpan>,
    rects: Vec<MaskRect>,
}

impl TileSchedule {
    /// The schedule of `mask` (`None`: every query sees every key) over `len` tokens with tiles
    /// of `block_q` queries by `block_k` keys.
    pub fn build(
        mask: Option<&AttentionMask>,
        len: usize,
        block_q: usize,
        block_k: usize,
    ) -> Result<Self, ScheduleError> {
        if block_q == 0 || block_k == 0 {
            return Err(ScheduleError::EmptyTile);
        }
        // Indices up to len + a tile must fit the kernel's signed 32-bit arithmetic.
        if len + block_q.max(block_k) > i32::MAX as usize {
            return Err(ScheduleError::TooLong { len });
        }
        let segments = row_segments(mask, len)?;
        let q_tiles = len.div_ceil(block_q);
        let mut schedule = Self {
            len,
            block_q,
            block_k,
            span_offsets: Vec::with_capacity(q_tiles + 1),
            spans: Vec::new(),
            rects: Vec::new(),
        };
        schedule.span_offsets.push(0);
        let mut first_seg = 0;
        for t in 0..q_tiles {
            let rows = t * block_q..((t + 1) * block_q).min(len);
            while segments[first_seg].rows.end <= rows.start {
                first_seg += 1;
            }
            let last_seg =
                first_seg + segments[first_seg..].partition_point(|s| s.rows.start < rows.end);
            schedule.push_query_tile(&rows, &segments[first_seg..last_seg]);
            schedule.span_offsets.push(schedule.spans.len() as u32);
        }
        Ok(schedule)
    }

    /// Appends the spans of the query tile with rows `rows`, whose row segments are `segs`.
    fn push_query_tile(&mut self, rows: &Range<usize>, segs: &[RowSegment]) {
        // The union of the segments' keys decides which key tiles hold any allowed pair.
        let mut union: Vec<Range<usize>> = segs.iter().flat_map(|s| s.keys.clone()).collect();
        union.sort_unstable_by_key(|k| k.start);
        let mut tiles: Vec<Range<usize>> = Vec::new();
        for k in union {
            let t = k.start / self.block_k..k.end.div_ceil(self.block_k);
            match tiles.last_mut() {
                Some(last) if t.start <= last.end => last.end = last.end.max(t.end),
                _ => tiles.push(t),
            }
        }
        let full_rows = rows.len() == self.block_q;
        let first_span = self.spans.len();
        for j in tiles.into_iter().flatten() {
            let keys = j * self.block_k..((j + 1) * self.block_k).min(self.len);
            let full = full_rows
                && keys.len() == self.block_k
                && segs.iter().all(|s| {
                    s.keys
                        .iter()
                        .any(|k| k.start <= keys.start && keys.end <= k.end)
                });
            let j = j as u32;
            if full {
                let this_tile = self.spans.len() > first_span;
                match self.spans.last_mut() {
                    Some(last) if this_tile && last.is_full() && last.tile_end == j => {
                        last.tile_end = j + 1
                    }
                    _ => {
                        let r = self.rects.len() as u32;
                        self.spans.push(KeySpan {
                            tile_begin: j,
                            tile_end: j + 1,
                            rect_begin: r,
                            rect_end: r,
                        });
                    }
                }
                continue;
            }
            let rect_begin = self.rects.len() as u32;
            for s in segs {
                let q = s.rows.start.max(rows.start)..s.rows.end.min(rows.end);
                for k in &s.keys {
                    let k = k.start.max(keys.start)..k.end.min(keys.end);
                    if !k.is_empty() {
                        self.rects.push(MaskRect {
                            q_begin: q.start as u32,
                            q_end: q.end as u32,
                            k_begin: k.start as u32,
                            k_end: k.end as u32,
                        });
                    }
                }
            }
            self.spans.push(KeySpan {
                tile_begin: j,
                tile_end: j + 1,
                rect_begin,
                rect_end: self.rects.len() as u32,
            });
        }
    }

    /// The sequence length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the sequence is empty (no query tiles).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queries per tile.
    pub fn block_q(&self) -> usize {
        self.block_q
    }

    /// Keys per tile.
    pub fn block_k(&self) -> usize {
        self.block_k
    }

    /// Number of query tiles, `ceil(len / block_q)`.
    pub fn query_tiles(&self) -> usize {
        self.span_offsets.len() - 1
    }

    /// The spans of query tile `t`, in ascending key order.
    pub fn spans_of(&self, t: usize) -> &[KeySpan] {
        &self.spans[self.span_offsets[t] as usize..self.span_offsets[t + 1] as usize]
    }

    /// The mask rectangles of `span` (empty for full spans).
    pub fn rects_of(&self, span: &KeySpan) -> &[MaskRect] {
        &self.rects[span.rect_begin as usize..span.rect_end as usize]
    }

    /// Offsets into [`Self::spans`] per query tile (`query_tiles() + 1` entries).
    pub fn span_offsets(&self) -> &[u32] {
        &self.span_offsets
    }

    /// All spans, query tile by query tile.
    pub fn spans(&self) -> &[KeySpan] {
        &self.spans
    }

    /// All mask rectangles.
    pub fn rects(&self) -> &[MaskRect] {
        &self.rects
    }

    /// Number of (query tile, key tile) pairs the kernel computes.
    pub fn visited_tiles(&self) -> usize {
        self.spans.iter().map(|s| s.tiles().len()).sum()
    }

    /// Number of visited tiles that need masking.
    pub fn partial_tiles(&self) -> usize {
        self.spans.iter().filter(|s| !s.is_full()).count()
    }

    /// Number of allowed (query, key) pairs: the useful work, counted from the schedule.
    pub fn allowed_pairs(&self) -> u64 {
        let tile = (self.block_q * self.block_k) as u64;
        self.spans
            .iter()
            .map(|s| {
                if s.is_full() {
                    s.tiles().len() as u64 * tile
                } else {
                    self.rects_of(s).iter().map(MaskRect::area).sum()
                }
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel does with a schedule, pair by pair: how many times each (query, key)
    /// pair of the sequence enters a softmax. Also checks the per-tile promises.
    fn simulate(s: &TileSchedule) -> Vec<u32> {
        let len = s.len();
        let mut seen = vec![0u32; len * len];
        for t in 0..s.query_tiles() {
            let mut prev_end = 0;
            for span in s.spans_of(t) {
                assert!(span.tile_begin < span.tile_end, "empty span");
                assert!(span.tile_begin as usize >= prev_end, "tiles out of order");
                prev_end = span.tile_end as usize;
                assert!(span.is_full() || span.tiles().len() == 1, "partial run");
                for j in span.tiles() {
                    let mut used = 0;
                    for q in t * s.block_q()..(t + 1) * s.block_q() {
                        for k in j * s.block_k()..(j + 1) * s.block_k() {
                            let on = if span.is_full() {
                                assert!(q < len && k < len, "full tile leaves the sequence");
                                true
                            } else {
                                s.rects_of(span).iter().any(|r| r.contains(q, k))
                            };
                            if on {
                                assert!(q < len && k < len, "rectangle leaves the sequence");
                                seen[q * len + k] += 1;
                                used += 1;
                            }
                        }
                    }
                    assert!(used > 0, "query tile {t} visits fully masked key tile {j}");
                    if !span.is_full() {
                        assert!(
                            used < s.block_q() * s.block_k(),
                            "tile ({t}, {j}) is flagged partial but has no masked pair"
                        );
                    }
                }
            }
        }
        seen
    }

    fn check(mask: Option<&AttentionMask>, len: usize, bq: usize, bk: usize) -> TileSchedule {
        let s = TileSchedule::build(mask, len, bq, bk).unwrap();
        let seen = simulate(&s);
        let dense = mask.map_or_else(|| vec![true; len * len], |m| m.dense(len));
        for (i, (&n, &allowed)) in seen.iter().zip(&dense).enumerate() {
            assert_eq!(
                n,
                u32::from(allowed),
                "pair (q {}, k {}) covered {n} times, allowed {allowed} ({len} tokens, tiles {bq}x{bk})",
                i / len,
                i % len
            );
        }
        let pairs = dense.iter().filter(|&&b| b).count() as u64;
        assert_eq!(s.allowed_pairs(), pairs);
        s
    }

    /// Deterministic pseudo-random numbers without a dependency.
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    fn random_range(rng: &mut Lcg, len: usize) -> Range<usize> {
        let a = rng.below(len + 1);
        let b = rng.below(len + 1);
        a.min(b)..a.max(b) + rng.below(3) // sometimes past the end: clipped like the reference
    }

    #[test]
    fn full_attention_is_one_span_per_query_tile_plus_the_ragged_edge() {
        for (len, bq, bk) in [(64, 16, 16), (70, 16, 16), (5, 16, 8), (33, 8, 16)] {
            let s = check(None, len, bq, bk);
            let ragged_k = len % bk != 0;
            for t in 0..s.query_tiles() {
                let ragged_q = (t + 1) * bq > len;
                let full_tiles: usize = s.spans_of(t).iter().filter(|x| x.is_full()).count();
                assert!(full_tiles <= 1, "full tiles not merged into one span");
                let want_partial = if ragged_q {
                    len.div_ceil(bk)
                } else {
                    usize::from(ragged_k)
                };
                let partial = s.spans_of(t).iter().filter(|x| !x.is_full()).count();
                assert_eq!(partial, want_partial, "len {len}, tile {t}");
            }
        }
    }

    #[test]
    fn random_masks_cover_every_allowed_pair_exactly_once() {
        let mut rng = Lcg(7);
        for case in 0..60 {
            let len = 1 + rng.below(90);
            let mut pairs: Vec<_> = (0..1 + rng.below(6))
                .map(|_| (random_range(&mut rng, len), random_range(&mut rng, len)))
                .collect();
            pairs.push((0..len, rng.below(len)..len)); // no query without keys
            let mask = AttentionMask::new(pairs);
            let (bq, bk) = [(8, 8), (16, 8), (8, 16), (4, 32), (128, 128)][case % 5];
            check(Some(&mask), len, bq, bk);
        }
    }

    #[test]
    fn frame_windows_skip_far_frames_and_mask_window_edges() {
        // 5 frames of 12 tokens, 7 audio/text tokens, window 1: the model's local pattern.
        let (frames, tpf, extra, window) = (5usize, 12, 7, 1);
        let nv = frames * tpf;
        let len = nv + extra;
        let mut pairs: Vec<_> = (0..frames)
            .map(|i| {
                let lo = i.saturating_sub(window) * tpf;
                let hi = ((i + window + 1) * tpf).min(nv);
                (i * tpf..(i + 1) * tpf, lo..hi)
            })
            .collect();
        pairs.push((0..nv, nv..len));
        pairs.push((nv..len, 0..len));
        let mask = AttentionMask::new(pairs);
        let s = check(Some(&mask), len, 8, 8);
        // Query tile 0 (frame 0) needs keys 0..24 (tiles 0-2) and 60..67 (tiles 7-8): tiles
        // 3..7 are skipped.
        let visited: Vec<usize> = s.spans_of(0).iter().flat_map(|x| x.tiles()).collect();
        assert_eq!(visited, [0, 1, 2, 7, 8]);
        assert!(s.visited_tiles() < s.query_tiles() * len.div_ceil(8));
    }

    #[test]
    fn overlapping_pairs_are_a_union() {
        let mask = AttentionMask::new(vec![(0..10, 0..6), (0..10, 4..9), (5..10, 8..10)]);
        let s = check(Some(&mask), 10, 4, 4);
        // Rows 0..5 see keys 0..9 as one merged range: one rectangle per row segment.
        let rects: Vec<_> = s
            .spans_of(0)
            .iter()
            .flat_map(|x| s.rects_of(x).to_vec())
            .collect();
        assert!(rects.iter().all(|r| r.q_begin == 0 && r.q_end == 4));
    }

    #[test]
    fn a_query_without_keys_is_refused() {
        let mask = AttentionMask::new(vec![(0..3, 0..5), (4..5, 0..5)]);
        assert_eq!(
            TileSchedule::build(Some(&mask), 5, 2, 2),
            Err(ScheduleError::RowWithoutKeys { row: 3 })
        );
        let empty_keys = AttentionMask::new(vec![(0..5, 2..2)]);
        assert_eq!(
            TileSchedule::build(Some(&empty_keys), 5, 2, 2),
            Err(ScheduleError::RowWithoutKeys { row: 0 })
        );
        assert_eq!(
            TileSchedule::build(None, 5, 0, 2),
            Err(ScheduleError::EmptyTile)
        );
    }

    #[test]
    fn empty_sequence_has_no_tiles() {
        let s = TileSchedule::build(None, 0, 128, 128).unwrap();
        assert_eq!(s.query_tiles(), 0);
        assert_eq!(s.visited_tiles(), 0);
    }
}
