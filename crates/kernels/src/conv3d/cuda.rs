//! Launching `kernels/conv3d_layout.cu` and `kernels/conv3d_sm80.cu` on candle's CUDA stream.
//!
//! [`plan`] decides whether the kernel can compute a call (a CUDA device of compute capability
//! 9.x, bf16 input and weights, a shape [`Geometry::plan`] accepts). [`run`] then
//!
//! 1. reorders the weights to the kernel's B layout and the bias to f32 (candle ops on the
//!    device; a few MB per call, well under 1 % of the convolution's time);
//! 2. with an input norm, computes its per-position scales with `cadence_conv3d_norm_stats`
//!    ([`NormStatsOp`], a `CustomOp1`, `[N, T·H·W]` f32);
//! 3. copies the input to channels-last `[N, T·H·W, c_pad]` with `cadence_conv3d_channels_last`,
//!    normalising and activating on the way when asked ([`ChannelsLastOp`], a `CustomOp1`; an
//!    input view narrowed along time or batch is read in place, anything else is made
//!    contiguous first);
//! 4. launches the convolution entry point of the planned tile width ([`ConvOp`], a
//!    `CustomOp2` on the copy and the weights; bias and residual ride in the op) with
//!    [`Geometry::ctas`] CTAs of [`THREADS`] threads and [`TileN::smem_bytes`] of shared
//!    memory.
//!
//! With `poison_output` both the copy and the output are filled with bf16 NaN first, so an
//! element either kernel fails to write shows up in a self-test.

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig,
    PushKernelArg,
};
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Storage, Tensor,
};
use half::bf16;

use super::gemm::{
    gemm_weights, ChannelsLastParams, Geometry, NormStatsParams, Params, TileN, THREADS,
    TRANSPOSE_POSITIONS,
};
use super::{Conv3dConfig, Fused, InputNorm};
use crate::cuda_launch::{hopper_bf16, load_function, poison_bf16, poison_f32};

mod cubins {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

const TRANSPOSE_ENTRY: &str = "cadence_conv3d_channels_last";
const STATS_ENTRY: &str = "cadence_conv3d_norm_stats";

// SAFETY: plain old data with the C layout of the kernels' parameters (asserted in gemm.rs and
// in conv3d_common.cuh).
unsafe impl DeviceRepr for Params {}
// SAFETY: as above.
unsafe impl DeviceRepr for ChannelsLastParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for NormStatsParams {}

/// What [`plan`] decided.
pub(super) enum Plan {
    /// The kernel can compute the call.
    Run(Box<Geometry>),
    /// It cannot, for the reason given.
    Unsupported(String),
}

/// Whether the kernel can compute `conv3d(x, weight, cfg)` (arguments already validated).
pub(super) fn plan(x: &Tensor, weight: &Tensor, cfg: Conv3dConfig) -> Result<Plan> {
    if let Err(why) = hopper_bf16(x.device(), &[("input", x), ("weight", weight)])? {
        return Ok(Plan::Unsupported(why));
    }
    let dims = |t: &Tensor| -> Result<[usize; 5]> {
        let (a, b, c, d, e) = t.dims5()?;
        Ok([a, b, c, d, e])
    };
    Ok(match Geometry::plan(dims(x)?, dims(weight)?, cfg) {
        Ok(g) => Plan::Run(Box::new(g)),
        Err(why) => Plan::Unsupported(why),
    })
}

/// Runs the planned convolution: `conv3d(norm(x), weight) + bias (+ residual)` as bf16 NCTHW.
pub(super) fn run(
    g: &Geometry,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    fused: Fused,
    poison_output: bool,
) -> Result<Tensor> {
    let weights = gemm_weights(weight, g.c_pad)?;
    let bias = bias
        .map(|b| b.to_dtype(DType::F32)?.contiguous())
        .transpose()?;
    let residual = fused.residual.map(Tensor::contiguous).transpose()?;
    // The input passes read any batch and channel strides, but frames, rows and columns
    // must be dense.
    let x = if dense_frames(x.layout()) {
        x.clone()
    } else {
        x.contiguous()?
    };
    let norm = match fused.input_norm {
        Some(n) => Some(prepare_norm(g, &x, n, poison_output)?),
        None => None,
    };
    let channels_last = x.apply_op1_no_bwd(&ChannelsLastOp {
        geometry: g.clone(),
        norm,
        poison_output,
    })?;
    channels_last.apply_op2_no_bwd(
        &weights,
        &ConvOp {
            geometry: g.clone(),
            bias,
            residual,
            poison_output,
        },
    )
}

/// The input norm as the transposition applies it: per-position scales `[N, P]` f32, gamma as
/// contiguous f32, the activation's code.
struct NormInputs {
    inv_scale: Tensor,
    gamma: Option<Tensor>,
    act: i32,
}

fn prepare_norm(
    g: &Geometry,
    x: &Tensor,
    norm: &InputNorm,
    poison_output: bool,
) -> Result<NormInputs> {
    let inv_scale = x.apply_op1_no_bwd(&NormStatsOp {
        geometry: g.clone(),
        norm: norm.kind,
        poison_output,
    })?;
    let gamma = norm
        .gamma
        .as_ref()
        .map(|t| t.to_dtype(DType::F32)?.contiguous())
        .transpose()?;
    Ok(NormInputs {
        inv_scale,
        gamma,
        act: norm.act.code(),
    })
}

/// Whether a `[N, C, T, H, W]` layout has dense `T, H, W` (strides `H·W`, `W`, 1).
fn dense_frames(l: &Layout) -> bool {
    let (d, s) = (l.dims(), l.stride());
    d.len() == 5 && s[4] == 1 && s[3] == d[4] && s[2] == d[3] * d[4]
}

/// The conv3d function `entry` of `cubin` on `dev` (see [`load_function`]).
fn function(
    dev: &CudaDevice,
    cubin: Option<&'static [u8]>,
    entry: &'static str,
    smem_bytes: usize,
) -> Result<CudaFunction> {
    load_function(dev, cubin, entry, smem_bytes, || {
        "the conv3d kernel was not compiled into this build of cadence-kernels (nvcc was \
         missing or fake); install the CUDA 13.0 toolkit with \
         `eval \"$(scripts/cuda/toolkit.sh)\"` and rebuild with --features cuda, or set \
         CADENCE_CONV3D_KERNEL=reference"
            .into()
    })
}

/// Allocates `len` bf16 values on `stream` (uninitialised: the kernels write every element,
/// which the poisoned self-tests check).
fn alloc(stream: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<bf16>> {
    // SAFETY: see the function's doc: every element is written before it is read.
    unsafe { stream.alloc::<bf16>(len) }.w()
}

/// The per-position scales of an input norm: `[N, T·H·W]` f32.
struct NormStatsOp {
    geometry: Geometry,
    norm: super::NormKind,
    poison_output: bool,
}

impl CustomOp1 for NormStatsOp {
    fn name(&self) -> &'static str {
        "cadence-conv3d-norm-stats"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("the conv3d kernel runs on CUDA devices only")
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        let g = &self.geometry;
        if !dense_frames(layout) {
            bail!("conv3d kernel: the input's frames must be dense (internal error)");
        }
        let dev = &storage.device;
        let stream = dev.cuda_stream();
        let func = function(dev, cubins::CONV3D_LAYOUT, STATS_ENTRY, 0)?;
        let x = storage.as_cuda_slice::<bf16>()?;
        let strides = (layout.stride()[0], layout.stride()[1]);
        let offset = layout.start_offset();
        let len = g.batch * g.input_positions();
        // SAFETY: every element is written by the kernel (one per position).
        let mut out = unsafe { stream.alloc::<f32>(len) }.w()?;
        let (x_ptr, _x_sync) = x.device_ptr(&stream);
        let (o_ptr, _o_sync) = out.device_ptr_mut(&stream);
        if self.poison_output {
            poison_f32(o_ptr, len, &stream)?;
        }
        let mut params = g.norm_stats_params(strides, offset, self.norm);
        params.x = x_ptr + (offset * 2) as u64;
        params.inv_scale = o_ptr;
        let (gx, gy, gz) = g.stats_grid();
        let cfg = LaunchConfig {
            grid_dim: (gx, gy, gz),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(&func);
        launch.arg(&params);
        // SAFETY: `params` mirrors NormStatsParams; x addresses the input view, the output holds
        // one f32 per (batch item, position); both stay alive and ordered by the sync guards.
        unsafe { launch.launch(cfg) }.w()?;
        drop((_x_sync, _o_sync));
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            Shape::from((g.batch, g.input_positions())),
        ))
    }
}

/// NCTHW (dense frames) -> `[N, T·H·W, c_pad]` bf16, channels past `C` zero; normalised and
/// activated on the way when `norm` is set.
struct ChannelsLastOp {
    geometry: Geometry,
    norm: Option<NormInputs>,
    poison_output: bool,
}

impl CustomOp1 for ChannelsLastOp {
    fn name(&self) -> &'static str {
        "cadence-conv3d-channels-last"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("the conv3d kernel runs on CUDA devices only")
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        let g = &self.geometry;
        if !dense_frames(layout) {
            bail!("conv3d kernel: the input's frames must be dense (internal error)");
        }
        let dev = &storage.device;
        let stream = dev.cuda_stream();
        let func = function(dev, cubins::CONV3D_LAYOUT, TRANSPOSE_ENTRY, 0)?;
        let x = storage.as_cuda_slice::<bf16>()?;
        let strides = (layout.stride()[0], layout.stride()[1]);
        let offset = layout.start_offset();

        let inv_guard = self.norm.as_ref().map(|n| n.inv_scale.storage_and_layout());
        let inv = match &inv_guard {
            Some((storage, layout)) => {
                let (s, start) = cuda_view(storage, layout, "norm scales")?;
                Some((s.as_cuda_slice::<f32>()?, start))
            }
            None => None,
        };
        let gamma_guard = self
            .norm
            .as_ref()
            .and_then(|n| n.gamma.as_ref())
            .map(Tensor::storage_and_layout);
        let gamma = match &gamma_guard {
            Some((storage, layout)) => {
                let (s, start) = cuda_view(storage, layout, "norm gamma")?;
                Some((s.as_cuda_slice::<f32>()?, start))
            }
            None => None,
        };

        let mut out = alloc(&stream, g.channels_last_len())?;
        let (x_ptr, _x_sync) = x.device_ptr(&stream);
        let inv_ptr = inv.map(|(t, start)| (t.device_ptr(&stream), start));
        let gamma_ptr = gamma.map(|(t, start)| (t.device_ptr(&stream), start));
        let (o_ptr, _o_sync) = out.device_ptr_mut(&stream);
        if self.poison_output {
            poison_bf16(o_ptr, g.channels_last_len(), &stream)?;
        }
        let act = self.norm.as_ref().map_or(0, |n| n.act);
        let mut params = g.transpose_params(strides, offset, act);
        params.x = x_ptr + (offset * 2) as u64;
        params.out = o_ptr;
        params.inv_scale = inv_ptr
            .as_ref()
            .map_or(0, |((p, _), start)| p + (start * 4) as u64);
        params.gamma = gamma_ptr
            .as_ref()
            .map_or(0, |((p, _), start)| p + (start * 4) as u64);
        let (gx, gy, gz) = g.transpose_grid();
        let cfg = LaunchConfig {
            grid_dim: (gx, gy, gz),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        debug_assert_eq!(
            gx as usize,
            g.input_positions().div_ceil(TRANSPOSE_POSITIONS)
        );
        let mut launch = stream.launch_builder(&func);
        launch.arg(&params);
        // SAFETY: `params` mirrors ChannelsLastParams; x addresses the input view (every
        // element it reads lies inside the storage, by the layout), the norm scales hold one
        // f32 per (batch item, position), gamma one per input channel, out holds
        // channels_last_len() values; all stay alive and ordered by the sync guards.
        unsafe { launch.launch(cfg) }.w()?;
        drop((_x_sync, _o_sync, inv_ptr, gamma_ptr));
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            Shape::from((g.batch, g.input_positions(), g.c_pad)),
        ))
    }
}

/// The convolution on the channels-last input and the reordered weights.
struct ConvOp {
    geometry: Geometry,
    /// `[C_out]` f32, contiguous, on the device.
    bias: Option<Tensor>,
    /// The output's shape in bf16, contiguous, on the device.
    residual: Option<Tensor>,
    poison_output: bool,
}

/// The CUDA storage and element offset of a contiguous tensor held by an op.
fn cuda_view<'a>(
    storage: &'a Storage,
    layout: &Layout,
    what: &str,
) -> Result<(&'a CudaStorage, usize)> {
    match (storage, layout.contiguous_offsets()) {
        (Storage::Cuda(s), Some((start, _))) => Ok((s, start)),
        (Storage::Cuda(_), None) => bail!("conv3d kernel: the {what} must be contiguous"),
        _ => bail!("conv3d kernel: the {what} must be on the CUDA device of the input"),
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "cadence-conv3d"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("the conv3d kernel runs on CUDA devices only")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let g = &self.geometry;
        let tile: TileN = g.tile_n;
        let dev = &xs.device;
        let stream = dev.cuda_stream();
        let func = function(dev, cubins::CONV3D_SM80, tile.entry(), tile.smem_bytes())?;
        let (Some((x0, _)), Some((w0, _))) = (xl.contiguous_offsets(), wl.contiguous_offsets())
        else {
            bail!("conv3d kernel: the channels-last input and the weights must be contiguous");
        };
        let x = xs.as_cuda_slice::<bf16>()?;
        let w = ws.as_cuda_slice::<bf16>()?;

        let bias_guard = self.bias.as_ref().map(Tensor::storage_and_layout);
        let bias = match &bias_guard {
            Some((storage, layout)) => {
                let (s, start) = cuda_view(storage, layout, "bias")?;
                Some((s.as_cuda_slice::<f32>()?, start))
            }
            None => None,
        };
        let residual_guard = self.residual.as_ref().map(Tensor::storage_and_layout);
        let residual = match &residual_guard {
            Some((storage, layout)) => {
                let (s, start) = cuda_view(storage, layout, "residual")?;
                Some((s.as_cuda_slice::<bf16>()?, start))
            }
            None => None,
        };

        let out_len: usize = g.output_dims().iter().product();
        let mut out = alloc(&stream, out_len)?;
        let (x_ptr, _x_sync) = x.device_ptr(&stream);
        let (w_ptr, _w_sync) = w.device_ptr(&stream);
        let bias_ptr = bias.map(|(b, start)| (b.device_ptr(&stream), start));
        let res_ptr = residual.map(|(r, start)| (r.device_ptr(&stream), start));
        let (o_ptr, _o_sync) = out.device_ptr_mut(&stream);
        if self.poison_output {
            poison_bf16(o_ptr, out_len, &stream)?;
        }

        let mut params = g.params(g.vector_store(res_ptr.as_ref().map(|(_, start)| *start)));
        params.x = x_ptr + (x0 * 2) as u64;
        params.weight = w_ptr + (w0 * 2) as u64;
        params.bias = bias_ptr
            .as_ref()
            .map_or(0, |((p, _), start)| p + (start * 4) as u64);
        params.residual = res_ptr
            .as_ref()
            .map_or(0, |((p, _), start)| p + (start * 2) as u64);
        params.out = o_ptr;
        let cfg = LaunchConfig {
            grid_dim: (g.ctas() as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: tile.smem_bytes() as u32,
        };
        let mut launch = stream.launch_builder(&func);
        launch.arg(&params);
        // SAFETY: `params` mirrors Conv3dParams. The channels-last input holds
        // channels_last_len() values, the weights c_pad·taps·C_out, the bias C_out f32, the
        // residual and the output the output's element count; the kernel reads and writes
        // nothing else (checked by the emulator tests). Everything stays alive and ordered on
        // this stream by the sync guards, dropped after the launch is queued.
        unsafe { launch.launch(cfg) }.w()?;
        drop((_x_sync, _w_sync, _o_sync, bias_ptr, res_ptr));
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            Shape::from(g.output_dims().to_vec()),
        ))
    }
}
