//! Launching the attention kernels of `kernels/attention_sm80.cu` and `attention_sm90.cu`.
//!
//! [`plan`] decides whether a kernel can compute a call (a CUDA device of compute capability
//! 9.x, bf16 q/k/v, head_dim at most 128 and a multiple of 8, GQA with `Hq % Hk == 0`, a mask
//! whose every query has a key) and builds its block-sparse [`TileSchedule`] on the CPU. The
//! launch is a candle [`CustomOp3`] on (q, k, v): the schedule is uploaded (a few KB; rebuilt
//! and re-uploaded per call, which costs well under 1 % of an attention call at any size the
//! model runs), the output is allocated and, for self-tests, poisoned with NaN, and one CTA
//! per (query tile, query head) is launched on candle's stream.
//!
//! Heads narrower than 128 (the tiny fixture models) are zero-padded to 128 on the device: the
//! extra zero columns change no score or output, and the softmax scale stays `1/sqrt(D)`.

use std::f32::consts::LOG2_E;
use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{
    sys, CudaFunction, CudaSlice, CudaStream, CudaView, DevicePtr, DevicePtrMut, DeviceRepr,
    LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, D};
use half::bf16;

use super::schedule::TileSchedule;
use super::{AttentionKernel, AttentionMask};
use crate::cuda_launch::{hopper_bf16, load_function, poison_bf16};
use crate::cuda_view::contiguous;

mod cubins {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

/// The kernels' head dimension; narrower heads are zero-padded to it.
const HEAD_DIM: usize = 128;

/// Launch geometry of one kernel, mirrored by the constants of its `.cu` file.
struct KernelSpec {
    cubin: Option<&'static [u8]>,
    entry: &'static str,
    block_q: usize,
    block_k: usize,
    threads: u32,
    smem_bytes: u32,
    tensor_maps: bool,
}

fn spec(kernel: AttentionKernel) -> Option<KernelSpec> {
    match kernel {
        AttentionKernel::Reference => None,
        AttentionKernel::Mma => Some(KernelSpec {
            cubin: cubins::ATTENTION_SM80,
            entry: "cadence_attention_sm80",
            block_q: 128,
            block_k: 64,
            threads: 256,
            smem_bytes: 98_304,
            tensor_maps: false,
        }),
        AttentionKernel::Wgmma | AttentionKernel::WgmmaPipelined => Some(KernelSpec {
            cubin: cubins::ATTENTION_SM90,
            entry: if kernel == AttentionKernel::Wgmma {
                "cadence_attention_sm90"
            } else {
                "cadence_attention_sm90_pipelined"
            },
            block_q: 128,
            block_k: 128,
            threads: 384,
            smem_bytes: 164_936,
            tensor_maps: true,
        }),
    }
}

/// What [`plan`] decided.
pub(super) enum Plan {
    /// The kernel can compute the call.
    Run(Launch),
    /// It cannot, for the reason given.
    Unsupported(String),
}

/// A planned kernel launch.
pub(super) struct Launch {
    kernel: AttentionKernel,
    schedule: Arc<TileSchedule>,
}

/// Whether `kernel` can compute attention over these inputs, and its schedule if so.
pub(super) fn plan(
    kernel: AttentionKernel,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&AttentionMask>,
) -> Result<Plan> {
    let Some(spec) = spec(kernel) else {
        return Ok(Plan::Unsupported(
            "the reference is not a GPU kernel".into(),
        ));
    };
    if let Err(why) = hopper_bf16(q.device(), &[("q", q), ("k", k), ("v", v)])? {
        return Ok(Plan::Unsupported(why));
    }
    let (Ok((len, hq, dim)), Ok((k_len, hk, k_dim))) = (q.dims3(), k.dims3()) else {
        return Ok(Plan::Unsupported("q and k must be (L, H, D)".into()));
    };
    if k.dims() != v.dims() || k_len != len || k_dim != dim || hk == 0 || hq % hk != 0 {
        return Ok(Plan::Unsupported(format!(
            "shapes q {:?}, k {:?}, v {:?} are not grouped-query attention",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    if dim > HEAD_DIM || dim % 8 != 0 || dim == 0 {
        return Ok(Plan::Unsupported(format!(
            "head_dim {dim} (the kernels take a multiple of 8 up to {HEAD_DIM})"
        )));
    }
    if len == 0 {
        return Ok(Plan::Unsupported("the sequence is empty".into()));
    }
    match TileSchedule::build(mask, len, spec.block_q, spec.block_k) {
        Ok(schedule) => Ok(Plan::Run(Launch {
            kernel,
            schedule: Arc::new(schedule),
        })),
        Err(e) => Ok(Plan::Unsupported(e.to_string())),
    }
}

impl Launch {
    /// Runs the planned kernel. `gate` is `(L, Hq)` in any float dtype.
    pub(super) fn run(
        self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        gate: Option<&Tensor>,
        poison_output: bool,
    ) -> Result<Tensor> {
        let (len, hq, dim) = q.dims3()?;
        let gate = match gate {
            Some(g) if g.dims() != [len, hq] => bail!(
                "attention gate is {:?}, expected (L, Hq) = ({len}, {hq})",
                g.dims()
            ),
            Some(g) => Some(g.to_dtype(DType::F32)?.contiguous()?),
            None => None,
        };
        let pad = |t: &Tensor| -> Result<Tensor> {
            if dim < HEAD_DIM {
                t.pad_with_zeros(D::Minus1, 0, HEAD_DIM - dim)
            } else {
                t.contiguous()
            }
        };
        let op = AttentionOp {
            kernel: self.kernel,
            schedule: self.schedule,
            gate,
            scale_log2: LOG2_E / (dim as f32).sqrt(),
            poison_output,
        };
        let out = pad(q)?.apply_op3_no_bwd(&pad(k)?, &pad(v)?, &op)?;
        if dim < HEAD_DIM {
            out.narrow(D::Minus1, 0, dim)?.contiguous()
        } else {
            Ok(out)
        }
    }
}

/// The kernel launch as a candle op on (q, k, v), all contiguous bf16 `(L, H, 128)`.
struct AttentionOp {
    kernel: AttentionKernel,
    schedule: Arc<TileSchedule>,
    /// `(L, Hq)` f32, contiguous, on the same device.
    gate: Option<Tensor>,
    scale_log2: f32,
    poison_output: bool,
}

/// `AttentionParams` of `kernels/attention_common.cuh`, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Params {
    q: u64,
    k: u64,
    v: u64,
    gate: u64,
    out: u64,
    span_offsets: u64,
    spans: u64,
    rects: u64,
    len: i32,
    heads_q: i32,
    heads_kv: i32,
    q_tiles: i32,
    scale_log2: f32,
}

// SAFETY: plain old data with the C layout of the kernel parameter.
unsafe impl DeviceRepr for Params {}

// The kernels static_assert the same sizes and offsets on their side.
const _: () = assert!(std::mem::size_of::<Params>() == 88);
const _: () = assert!(std::mem::offset_of!(Params, len) == 64);
const _: () = assert!(std::mem::offset_of!(Params, scale_log2) == 80);
const _: () = assert!(std::mem::size_of::<TensorMap>() == 128);

/// A `CUtensorMap` (128 bytes, 64-byte aligned), passed by value to the sm90 kernel.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy)]
struct TensorMap([u64; 16]);

// SAFETY: plain old data with the layout the driver expects for a CUtensorMap parameter.
unsafe impl DeviceRepr for TensorMap {}

impl TensorMap {
    /// The map of a `(len, heads, 128)` bf16 tensor at `ptr`, read in boxes of 64 head_dim
    /// columns (128 bytes, one swizzle span) x 1 head x `rows` tokens with the 128-byte
    /// swizzle the kernel's wgmma descriptors expect. Tokens past `len` read as zeros.
    fn new(ptr: u64, len: usize, heads: usize, rows: usize) -> Result<Self> {
        let mut map = TensorMap([0; 16]);
        let dims = [HEAD_DIM as u64, heads as u64, len as u64];
        let strides = [(HEAD_DIM * 2) as u64, (heads * HEAD_DIM * 2) as u64];
        let boxes = [64u32, 1, rows as u32];
        let element_strides = [1u32; 3];
        // SAFETY: every pointer refers to a live local array of the rank the call is given;
        // `map` is 64-byte aligned as the driver requires.
        unsafe {
            sys::cuTensorMapEncodeTiled(
                (&mut map as *mut TensorMap).cast::<sys::CUtensorMap>(),
                sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                3,
                ptr as *mut std::ffi::c_void,
                dims.as_ptr(),
                strides.as_ptr(),
                boxes.as_ptr(),
                element_strides.as_ptr(),
                sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
                sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
            .result()
            .w()?;
        }
        Ok(map)
    }
}

/// The loaded function of `kernel` on `dev` (see [`load_function`]).
fn function(dev: &CudaDevice, kernel: AttentionKernel, spec: &KernelSpec) -> Result<CudaFunction> {
    load_function(
        dev,
        spec.cubin,
        spec.entry,
        spec.smem_bytes as usize,
        || {
            format!(
            "the {kernel} attention kernel was not compiled into this build of cadence-kernels \
             (nvcc was missing or fake); install the CUDA 13.0 toolkit with \
             `eval \"$(scripts/cuda/toolkit.sh)\"` and rebuild with --features cuda"
        )
        },
    )
}

/// The contiguous bf16 view `layout` describes in `storage`.
fn view<'a>(storage: &'a CudaStorage, layout: &Layout, what: &str) -> Result<CudaView<'a, bf16>> {
    contiguous(storage, layout, "attention kernel", what)
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "cadence-attention"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!(
            "the {} attention kernel runs on CUDA devices only",
            self.kernel
        )
    }

    fn cuda_fwd(
        &self,
        qs: &CudaStorage,
        ql: &Layout,
        ks: &CudaStorage,
        kl: &Layout,
        vs: &CudaStorage,
        vl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let Some(spec) = spec(self.kernel) else {
            bail!("the reference is not a GPU kernel")
        };
        let dev = &qs.device;
        let stream = dev.cuda_stream();
        let func = function(dev, self.kernel, &spec)?;
        let (len, hq, _) = ql.shape().dims3()?;
        let (_, hk, _) = kl.shape().dims3()?;
        let (q, k, v) = (view(qs, ql, "q")?, view(ks, kl, "k")?, view(vs, vl, "v")?);

        // SAFETY: every element is written by the kernel (checked by the poisoned-output
        // self-test) before anything reads it.
        let mut out = unsafe { stream.alloc::<bf16>(len * hq * HEAD_DIM) }.w()?;

        self.launch(&stream, &func, &spec, [&q, &k, &v], &mut out, (len, hq, hk))?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            Shape::from((len, hq, HEAD_DIM)),
        ))
    }
}

impl AttentionOp {
    /// Uploads the schedule, poisons `out` if asked, and launches the kernel on `stream`.
    fn launch(
        &self,
        stream: &Arc<CudaStream>,
        func: &CudaFunction,
        spec: &KernelSpec,
        [q, k, v]: [&CudaView<'_, bf16>; 3],
        out: &mut CudaSlice<bf16>,
        (len, hq, hk): (usize, usize, usize),
    ) -> Result<()> {
        let gate_guard = self.gate.as_ref().map(Tensor::storage_and_layout);
        let gate_view = match &gate_guard {
            Some((storage, layout)) => match &**storage {
                Storage::Cuda(g) => match layout.contiguous_offsets() {
                    Some((a, b)) => Some(g.as_cuda_slice::<f32>()?.slice(a..b)),
                    None => bail!("attention gate must be contiguous"),
                },
                _ => bail!("attention gate must be on the CUDA device of q"),
            },
            None => None,
        };

        let s = &*self.schedule;
        let offsets: Vec<u32> = s.span_offsets().to_vec();
        let spans: Vec<u32> = s
            .spans()
            .iter()
            .flat_map(|x| [x.tile_begin, x.tile_end, x.rect_begin, x.rect_end])
            .collect();
        // The kernel never reads rects of full tiles; keep the buffer non-empty regardless.
        let rects: Vec<u32> = s
            .rects()
            .iter()
            .flat_map(|r| [r.q_begin, r.q_end, r.k_begin, r.k_end])
            .chain(
                s.rects()
                    .is_empty()
                    .then_some([0u32; 4])
                    .into_iter()
                    .flatten(),
            )
            .collect();
        let offsets = stream.clone_htod(&offsets).w()?;
        let spans = stream.clone_htod(&spans).w()?;
        let rects = stream.clone_htod(&rects).w()?;

        let (q_ptr, _q_sync) = q.device_ptr(stream);
        let (k_ptr, _k_sync) = k.device_ptr(stream);
        let (v_ptr, _v_sync) = v.device_ptr(stream);
        let elements = out.len();
        let (o_ptr, _o_sync) = out.device_ptr_mut(stream);
        let (offsets_ptr, _offsets_sync) = offsets.device_ptr(stream);
        let (spans_ptr, _spans_sync) = spans.device_ptr(stream);
        let (rects_ptr, _rects_sync) = rects.device_ptr(stream);
        let gate_ptr = gate_view.as_ref().map(|g| g.device_ptr(stream));

        if self.poison_output {
            poison_bf16(o_ptr, elements, stream)?;
        }

        let q_tiles = s.query_tiles();
        let params = Params {
            q: q_ptr,
            k: k_ptr,
            v: v_ptr,
            gate: gate_ptr.as_ref().map_or(0, |(p, _)| *p),
            out: o_ptr,
            span_offsets: offsets_ptr,
            spans: spans_ptr,
            rects: rects_ptr,
            len: len as i32,
            heads_q: hq as i32,
            heads_kv: hk as i32,
            q_tiles: q_tiles as i32,
            scale_log2: self.scale_log2,
        };
        let cfg = LaunchConfig {
            grid_dim: ((q_tiles * hq) as u32, 1, 1),
            block_dim: (spec.threads, 1, 1),
            shared_mem_bytes: spec.smem_bytes,
        };
        let maps;
        let mut launch = stream.launch_builder(func);
        launch.arg(&params);
        if spec.tensor_maps {
            maps = [
                TensorMap::new(q_ptr, len, hq, spec.block_q)?,
                TensorMap::new(k_ptr, len, hk, spec.block_k)?,
                TensorMap::new(v_ptr, len, hk, spec.block_k)?,
            ];
            launch.arg(&maps[0]).arg(&maps[1]).arg(&maps[2]);
        }
        // SAFETY: the arguments match the kernel's parameters (Params mirrors
        // AttentionParams; the tensor maps follow it for the sm90 kernel); every pointer is a
        // live allocation of the size the kernel indexes (L x H x 128 bf16, the schedule
        // arrays, L x Hq f32 gate), kept alive and ordered by the sync guards above.
        unsafe { launch.launch(cfg) }.w()?;
        Ok(())
    }
}
