//! The implicit-GEMM decomposition that `kernels/conv3d_sm80.cu` computes, and the plan of its
//! launch (output box shape, input-box ring, launch grids, kernel parameters).
//!
//! The convolution is the product `out[m, n] = Σ_k A[m, k] · B[k, n]` with
//!
//! * `m`: an output position `(b, t, h, w)`. A CTA computes one *box* of [`BLOCK_M`] = 256
//!   positions, `bt × bh × bw` (w fastest), and [`TileN::width`] output channels `n`;
//! * `k`: a *k-step* of one tap `(dt, dh, dw)` × [`CHUNK`] = 32 input channels, chunk-major:
//!   step `s` is chunk `s / taps`, tap `s % taps` (`tap = (dt·kh + dh)·kw + dw`);
//! * `A[m, k] = x[b, c, t·st − pt + dt, h·sh − ph + dh, w·sw − pw + dw]`: zero outside the
//!   input in space; in time zero, or the nearest edge frame with replicate padding. The
//!   kernel reads it from the channels-last copy `[N][T][H][W][c_pad]` (channels zero-padded to
//!   `c_pad`, a multiple of 32), and per chunk loads the whole *input box* the output box
//!   reads (`halo = (bt − 1)·st + kt` frames by `(bh − 1)·sh + kh` rows by
//!   `(bw − 1)·sw + kw` columns) once: a tap is the row offset `(dt·halo_h + dh)·halo_w + dw`
//!   into that box;
//! * `B[k, n]`: the weights reordered to `[c_pad / 32][taps][C_out][32]` ([`gemm_weights`]),
//!   so the tile of one k-step is one contiguous block.
//!
//! [`Geometry::plan`] chooses the box shape per layer (fewest boxes, then the smallest input
//! box) under the shared-memory budget of the input-box ring, and the ring's depth so that no
//! box is overwritten while a tap of its chunk may still read it. The tests of this module
//! simulate the kernel's loops on the CPU from a [`Geometry`] and check the result against the
//! reference convolution (shapes from the real Turbo-VAED layout), that every output element is
//! written exactly once, and that the load/compute schedule has no hazards.

use candle_core::{Result, Tensor};

use super::{Conv3dConfig, Dims3, NormKind};

/// Output positions per CTA (`BLOCK_M` of the kernel).
pub const BLOCK_M: usize = 256;
/// Input channels per k-step (`CHUNK`).
pub const CHUNK: usize = 32;
/// Weight tiles in flight (`B_STAGES`).
pub const B_STAGES: usize = 4;
/// Shared memory for the ring of input boxes (`A_REGION_BYTES`).
pub const A_REGION_BYTES: usize = 192 * 1024;
/// One shared-memory row: the 32 channels of a position in bf16 (`ROW_BYTES`).
pub const ROW_BYTES: usize = CHUNK * 2;
/// Threads per CTA of both kernels (`THREADS`).
pub const THREADS: u32 = 256;
/// Positions per CTA of the channels-last transposition.
pub const TRANSPOSE_POSITIONS: usize = 64;
/// Positions per CTA of the norm statistics (8 per thread).
pub const STATS_POSITIONS: usize = 8 * THREADS as usize;
/// Dynamic shared memory an sm_90 CTA may use.
pub const MAX_SMEM_BYTES: usize = 232_448;

/// Output channels per CTA; each width is its own kernel entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileN {
    /// 128 channels, warps 4 × 2 of 64 × 64.
    N128,
    /// 64 channels, warps 8 × 1 of 32 × 64.
    N64,
    /// 32 channels, warps 8 × 1 of 32 × 32 (the 12-channel output convs).
    N32,
}

impl TileN {
    /// Every width, widest first.
    pub const ALL: [Self; 3] = [Self::N128, Self::N64, Self::N32];

    /// Output channels per CTA.
    pub fn width(self) -> usize {
        match self {
            Self::N128 => 128,
            Self::N64 => 64,
            Self::N32 => 32,
        }
    }

    /// The kernel's entry point.
    pub fn entry(self) -> &'static str {
        match self {
            Self::N128 => "cadence_conv3d_sm80_n128",
            Self::N64 => "cadence_conv3d_sm80_n64",
            Self::N32 => "cadence_conv3d_sm80_n32",
        }
    }

    /// Dynamic shared memory of the entry point (`Tiling<BN, _>::SMEM_BYTES`).
    pub fn smem_bytes(self) -> usize {
        A_REGION_BYTES + B_STAGES * self.width() * ROW_BYTES
    }

    /// Relative cost per computed output channel: narrower warp tiles issue more ldmatrix per
    /// mma and re-read each input box more often. Estimates (x100), to be replaced by measured
    /// ratios from `conv3d_gpu bench`.
    fn cost_per_channel(self) -> usize {
        match self {
            Self::N128 => 100,
            Self::N64 => 110,
            Self::N32 => 130,
        }
    }

    /// The width with the least estimated cost for `c_out` channels: the padding to whole
    /// tiles against the per-channel cost (12 channels take N32, 48 take N64, 512 take N128).
    pub fn for_channels(c_out: usize) -> Self {
        let cost = |t: Self| c_out.div_ceil(t.width()) * t.width() * t.cost_per_channel();
        Self::ALL
            .into_iter()
            .min_by_key(|&t| cost(t))
            .unwrap_or(Self::N128)
    }
}

/// Everything the kernels need to know about one convolution, planned on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Batch items.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input channels rounded up to a multiple of [`CHUNK`].
    pub c_pad: usize,
    /// Output channels.
    pub c_out: usize,
    /// Input frames, rows, columns.
    pub input: Dims3,
    /// Output frames, rows, columns.
    pub output: Dims3,
    /// Kernel extent.
    pub kernel: Dims3,
    /// Step of the kernel window along each axis.
    pub stride: Dims3,
    /// Padding on both sides of each axis.
    pub padding: Dims3,
    /// Time padding repeats the edge frames (else zeros).
    pub replicate_time: bool,
    /// Output channels per CTA.
    pub tile_n: TileN,
    /// The output box of one CTA (`t · h · w == BLOCK_M`, `w` a multiple of 8).
    pub boxed: Dims3,
    /// Boxes per axis.
    pub tiles: Dims3,
    /// The input box the output box reads.
    pub halo: Dims3,
    /// Depth of the input-box ring.
    pub a_buffers: usize,
    /// Bytes between ring slots.
    pub a_stride: usize,
}

impl Geometry {
    /// Plans `conv3d(x, w, cfg)` for the kernel, or says why the kernel cannot compute it.
    /// `x` is `[B, C_in, T, H, W]`, `w` is `[C_out, C_in, kt, kh, kw]` (already validated).
    pub fn plan(
        x: [usize; 5],
        w: [usize; 5],
        cfg: Conv3dConfig,
    ) -> std::result::Result<Self, String> {
        let [batch, c_in, t, h, wd] = x;
        let [c_out, _, kt, kh, kw] = w;
        let (s, p) = (cfg.stride, cfg.padding);
        let input = Dims3::new(t, h, wd);
        let kernel = Dims3::new(kt, kh, kw);
        let output = Dims3::new(
            (t + 2 * p.t - kt) / s.t + 1,
            (h + 2 * p.h - kh) / s.h + 1,
            (wd + 2 * p.w - kw) / s.w + 1,
        );
        let c_pad = c_in.div_ceil(CHUNK) * CHUNK;
        let tile_n = TileN::for_channels(c_out);
        let taps = kt * kh * kw;
        let a_buffers = ring_depth(taps);

        let slot_bytes = |halo: Dims3| (halo.t * halo.h * halo.w * ROW_BYTES).div_ceil(128) * 128;
        let halo_of = |b: Dims3| {
            Dims3::new(
                (b.t - 1) * s.t + kt,
                (b.h - 1) * s.h + kh,
                (b.w - 1) * s.w + kw,
            )
        };
        let tiles_of = |b: Dims3| {
            Dims3::new(
                output.t.div_ceil(b.t),
                output.h.div_ceil(b.h),
                output.w.div_ceil(b.w),
            )
        };
        let best = box_shapes()
            .filter(|&b| a_buffers * slot_bytes(halo_of(b)) <= A_REGION_BYTES)
            .min_by_key(|&b| {
                let n = tiles_of(b);
                let h = halo_of(b);
                (n.t * n.h * n.w, h.t * h.h * h.w)
            })
            .ok_or_else(|| {
                format!(
                    "kernel {kernel:?} with stride {s:?} needs an input box larger than the \
                     shared memory ({a_buffers} x {} KB)",
                    A_REGION_BYTES / a_buffers / 1024
                )
            })?;
        let g = Self {
            batch,
            c_in,
            c_pad,
            c_out,
            input,
            output,
            kernel,
            stride: s,
            padding: p,
            replicate_time: cfg.replicate_time,
            tile_n,
            boxed: best,
            tiles: tiles_of(best),
            halo: halo_of(best),
            a_buffers,
            a_stride: slot_bytes(halo_of(best)),
        };
        g.check_limits()?;
        Ok(g)
    }

    /// The kernels index with 32-bit integers where a value is bounded by one axis or one
    /// frame; refuse sizes that would overflow them.
    fn check_limits(&self) -> std::result::Result<(), String> {
        let i32_max = i32::MAX as usize;
        let frame = self.input.t * self.input.h * self.input.w;
        let out_frame = self.output.h * self.output.w;
        let weights = self.chunks() * self.taps() * self.c_out * CHUNK;
        if frame > i32_max || out_frame > i32_max || weights > i32_max {
            return Err(format!(
                "input {:?} x {} channels is too large for the kernel's 32-bit indices",
                self.input, self.c_in
            ));
        }
        if self.ctas() > i32_max || self.batch > 65_535 || self.chunks() > 65_535 {
            return Err(format!(
                "{} CTAs / batch {} exceed the launch grid",
                self.ctas(),
                self.batch
            ));
        }
        Ok(())
    }

    /// Taps of the kernel, `kt · kh · kw`.
    pub fn taps(&self) -> usize {
        self.kernel.t * self.kernel.h * self.kernel.w
    }

    /// Chunks of 32 input channels.
    pub fn chunks(&self) -> usize {
        self.c_pad / CHUNK
    }

    /// K-steps per CTA.
    pub fn steps(&self) -> usize {
        self.chunks() * self.taps()
    }

    /// Output-channel tiles.
    pub fn n_tiles(&self) -> usize {
        self.c_out.div_ceil(self.tile_n.width())
    }

    /// Output boxes (over the batch too).
    pub fn boxes(&self) -> usize {
        self.batch * self.tiles.t * self.tiles.h * self.tiles.w
    }

    /// CTAs of the convolution launch.
    pub fn ctas(&self) -> usize {
        self.boxes() * self.n_tiles()
    }

    /// Positions of the input box.
    pub fn halo_positions(&self) -> usize {
        self.halo.t * self.halo.h * self.halo.w
    }

    /// Output shape `[B, C_out, T', H', W']`.
    pub fn output_dims(&self) -> [usize; 5] {
        [
            self.batch,
            self.c_out,
            self.output.t,
            self.output.h,
            self.output.w,
        ]
    }

    /// Positions per input frame sequence, `T · H · W` (the transposition's `P`).
    pub fn input_positions(&self) -> usize {
        self.input.t * self.input.h * self.input.w
    }

    /// Elements of the channels-last copy of the input.
    pub fn channels_last_len(&self) -> usize {
        self.batch * self.input_positions() * self.c_pad
    }

    /// Launch grid of the transposition: position tiles, channel chunks, batch.
    pub fn transpose_grid(&self) -> (u32, u32, u32) {
        (
            self.input_positions().div_ceil(TRANSPOSE_POSITIONS) as u32,
            self.chunks() as u32,
            self.batch as u32,
        )
    }

    /// Useful multiply-adds × 2 (the convolution's FLOPs, no padding counted).
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.output.t * self.output.h * self.output.w) as f64
            * (self.c_out * self.c_in * self.taps()) as f64
    }

    /// The kernel's parameters (buffer pointers left 0 for the launcher to fill).
    /// `vector_store`: the output and residual allow 16-byte accesses (see [`Params`]).
    pub fn params(&self, vector_store: bool) -> Params {
        let i = |v: usize| v as i32;
        Params {
            t: i(self.input.t),
            h: i(self.input.h),
            w: i(self.input.w),
            c_pad: i(self.c_pad),
            c_out: i(self.c_out),
            to: i(self.output.t),
            ho: i(self.output.h),
            wo: i(self.output.w),
            kt: i(self.kernel.t),
            kh: i(self.kernel.h),
            kw: i(self.kernel.w),
            st: i(self.stride.t),
            sh: i(self.stride.h),
            sw: i(self.stride.w),
            pt: i(self.padding.t),
            ph: i(self.padding.h),
            pw: i(self.padding.w),
            replicate_t: i32::from(self.replicate_time),
            bt: i(self.boxed.t),
            bh: i(self.boxed.h),
            bw: i(self.boxed.w),
            tiles_t: i(self.tiles.t),
            tiles_h: i(self.tiles.h),
            tiles_w: i(self.tiles.w),
            halo_t: i(self.halo.t),
            halo_h: i(self.halo.h),
            halo_w: i(self.halo.w),
            a_buffers: i(self.a_buffers),
            a_stride: i(self.a_stride),
            n_tiles: i(self.n_tiles()),
            vector_store: i32::from(vector_store),
            ..Params::default()
        }
    }

    /// Whether the epilogue may use 16-byte stores: every output row starts 16-byte aligned
    /// (`W'` a multiple of 8) and so does the residual view (element offset a multiple of 8).
    pub fn vector_store(&self, residual_offset: Option<usize>) -> bool {
        self.output.w.is_multiple_of(8) && residual_offset.is_none_or(|o| o.is_multiple_of(8))
    }

    /// Whether 16-byte loads of an input view with batch and channel strides `strides`
    /// (elements) starting `offset` elements into its buffer are aligned.
    fn vector_loads(&self, strides: (usize, usize), offset: usize) -> bool {
        [self.input_positions(), strides.0, strides.1, offset]
            .iter()
            .all(|v| v.is_multiple_of(8))
    }

    /// The transposition's parameters for an input view with batch and channel strides
    /// `strides` (elements) starting `offset` elements into its buffer; `act` is the code of
    /// the activation after the input norm (pointers left 0 for the launcher, `inv_scale` 0
    /// for no norm).
    pub fn transpose_params(
        &self,
        strides: (usize, usize),
        offset: usize,
        act: i32,
    ) -> ChannelsLastParams {
        ChannelsLastParams {
            stride_n: strides.0 as i64,
            stride_c: strides.1 as i64,
            n: self.batch as i32,
            c: self.c_in as i32,
            p: self.input_positions() as i32,
            c_pad: self.c_pad as i32,
            vector_loads: i32::from(self.vector_loads(strides, offset)),
            act,
            ..ChannelsLastParams::default()
        }
    }

    /// The norm statistics' parameters for the same input view (pointers left 0).
    pub fn norm_stats_params(
        &self,
        strides: (usize, usize),
        offset: usize,
        kind: NormKind,
    ) -> NormStatsParams {
        let (l2, eps, scale) = match kind {
            NormKind::Rms { eps } => (0, eps, 1.0),
            NormKind::L2 { eps } => (1, eps, (self.c_in as f64).sqrt()),
        };
        NormStatsParams {
            stride_n: strides.0 as i64,
            stride_c: strides.1 as i64,
            n: self.batch as i32,
            c: self.c_in as i32,
            p: self.input_positions() as i32,
            l2,
            eps: eps as f32,
            scale: scale as f32,
            vector_loads: i32::from(self.vector_loads(strides, offset)),
            ..NormStatsParams::default()
        }
    }

    /// Launch grid of the norm statistics: position tiles, batch.
    pub fn stats_grid(&self) -> (u32, u32, u32) {
        (
            self.input_positions().div_ceil(STATS_POSITIONS) as u32,
            self.batch as u32,
            1,
        )
    }
}

/// Depth of the input-box ring for a kernel of `taps` taps.
///
/// The box of chunk `j` is loaded (into slot `j % depth`) when k-step `j·taps` is issued,
/// which happens in the iteration of k-step `j·taps − (B_STAGES − 1)`, after that iteration's
/// barrier. The slot's previous box, chunk `j − depth`, was last read by k-step
/// `(j − depth + 1)·taps − 1`. It is safe when that read precedes the barrier:
/// `(depth − 1)·taps ≥ B_STAGES − 1`. Two slots at least, so that a chunk's box loads while the
/// previous chunk computes.
pub fn ring_depth(taps: usize) -> usize {
    (1 + (B_STAGES - 1).div_ceil(taps.max(1))).max(2)
}

/// Output box shapes `(t, h, w)` with `t·h·w = BLOCK_M` and `w` a multiple of 8 (an
/// ldmatrix row group and an epilogue run never leave a box row).
fn box_shapes() -> impl Iterator<Item = Dims3> {
    let powers = |max: usize| (0..=max.trailing_zeros()).map(|e| 1usize << e);
    powers(BLOCK_M)
        .filter(|&w| w >= 8)
        .flat_map(move |w| powers(BLOCK_M / w).map(move |h| Dims3::new(BLOCK_M / (w * h), h, w)))
}

/// `Conv3dParams` of `kernels/conv3d_common.cuh`, field for field (pointers as device
/// addresses).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params {
    pub x: u64,
    pub weight: u64,
    pub bias: u64,
    pub residual: u64,
    pub out: u64,
    pub t: i32,
    pub h: i32,
    pub w: i32,
    pub c_pad: i32,
    pub c_out: i32,
    pub to: i32,
    pub ho: i32,
    pub wo: i32,
    pub kt: i32,
    pub kh: i32,
    pub kw: i32,
    pub st: i32,
    pub sh: i32,
    pub sw: i32,
    pub pt: i32,
    pub ph: i32,
    pub pw: i32,
    pub replicate_t: i32,
    pub bt: i32,
    pub bh: i32,
    pub bw: i32,
    pub tiles_t: i32,
    pub tiles_h: i32,
    pub tiles_w: i32,
    pub halo_t: i32,
    pub halo_h: i32,
    pub halo_w: i32,
    pub a_buffers: i32,
    pub a_stride: i32,
    pub n_tiles: i32,
    pub vector_store: i32,
    pub pad_: i32,
}

/// `ChannelsLastParams` of `kernels/conv3d_common.cuh`, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelsLastParams {
    pub x: u64,
    pub out: u64,
    pub inv_scale: u64,
    pub gamma: u64,
    pub stride_n: i64,
    pub stride_c: i64,
    pub n: i32,
    pub c: i32,
    pub p: i32,
    pub c_pad: i32,
    pub vector_loads: i32,
    pub act: i32,
}

/// `NormStatsParams` of `kernels/conv3d_common.cuh`, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NormStatsParams {
    pub x: u64,
    pub inv_scale: u64,
    pub stride_n: i64,
    pub stride_c: i64,
    pub n: i32,
    pub c: i32,
    pub p: i32,
    pub l2: i32,
    pub eps: f32,
    pub scale: f32,
    pub vector_loads: i32,
    pub pad_: i32,
}

// The kernel static_asserts the same sizes and offsets on its side.
const _: () = assert!(std::mem::size_of::<Params>() == 168);
const _: () = assert!(std::mem::offset_of!(Params, t) == 40);
const _: () = assert!(std::mem::offset_of!(Params, vector_store) == 160);
const _: () = assert!(std::mem::size_of::<ChannelsLastParams>() == 72);
const _: () = assert!(std::mem::offset_of!(ChannelsLastParams, stride_n) == 32);
const _: () = assert!(std::mem::size_of::<NormStatsParams>() == 64);

impl Params {
    /// The struct's bytes as the kernel reads them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(168);
        for p in [self.x, self.weight, self.bias, self.residual, self.out] {
            v.extend_from_slice(&p.to_le_bytes());
        }
        for i in [
            self.t,
            self.h,
            self.w,
            self.c_pad,
            self.c_out,
            self.to,
            self.ho,
            self.wo,
            self.kt,
            self.kh,
            self.kw,
            self.st,
            self.sh,
            self.sw,
            self.pt,
            self.ph,
            self.pw,
            self.replicate_t,
            self.bt,
            self.bh,
            self.bw,
            self.tiles_t,
            self.tiles_h,
            self.tiles_w,
            self.halo_t,
            self.halo_h,
            self.halo_w,
            self.a_buffers,
            self.a_stride,
            self.n_tiles,
            self.vector_store,
            self.pad_,
        ] {
            v.extend_from_slice(&i.to_le_bytes());
        }
        v
    }
}

impl ChannelsLastParams {
    /// The struct's bytes as the kernel reads them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(72);
        for p in [self.x, self.out, self.inv_scale, self.gamma] {
            v.extend_from_slice(&p.to_le_bytes());
        }
        v.extend_from_slice(&self.stride_n.to_le_bytes());
        v.extend_from_slice(&self.stride_c.to_le_bytes());
        for i in [
            self.n,
            self.c,
            self.p,
            self.c_pad,
            self.vector_loads,
            self.act,
        ] {
            v.extend_from_slice(&i.to_le_bytes());
        }
        v
    }
}

impl NormStatsParams {
    /// The struct's bytes as the kernel reads them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&self.x.to_le_bytes());
        v.extend_from_slice(&self.inv_scale.to_le_bytes());
        v.extend_from_slice(&self.stride_n.to_le_bytes());
        v.extend_from_slice(&self.stride_c.to_le_bytes());
        for i in [self.n, self.c, self.p, self.l2] {
            v.extend_from_slice(&i.to_le_bytes());
        }
        v.extend_from_slice(&self.eps.to_le_bytes());
        v.extend_from_slice(&self.scale.to_le_bytes());
        v.extend_from_slice(&self.vector_loads.to_le_bytes());
        v.extend_from_slice(&self.pad_.to_le_bytes());
        v
    }
}

/// The weights `[C_out, C_in, kt, kh, kw]` in the kernel's B layout
/// `[c_pad / 32][taps][C_out][32]` (input channels zero-padded to `c_pad`), contiguous, on
/// the weights' device and in their dtype.
pub fn gemm_weights(w: &Tensor, c_pad: usize) -> Result<Tensor> {
    let (c_out, c_in, kt, kh, kw) = w.dims5()?;
    let taps = kt * kh * kw;
    let w = w.reshape((c_out, c_in, taps))?;
    let w = if c_pad > c_in {
        w.pad_with_zeros(1, 0, c_pad - c_in)?
    } else {
        w
    };
    w.reshape((c_out, c_pad / CHUNK, CHUNK, taps))?
        .permute((1, 3, 0, 2))?
        .contiguous()
}

#[cfg(test)]
mod tests;
