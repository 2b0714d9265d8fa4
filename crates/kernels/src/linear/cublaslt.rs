//! The FP8 GEMM on Hopper: one cuBLASLt call with per-row scales (feature `cuda`).
//!
//! Layout. candle's tensors are row-major and cuBLASLt is column-major, and its FP8 kernels
//! take only the "TN" form (A transposed, B not). A row-major `(N, K)` weight is a
//! column-major `K × N` matrix with leading dimension `K`; with `transa = T` it is the `N × K`
//! operand A. A row-major `(L, K)` activation is the column-major `K × L` operand B
//! (`transb = N`). The product D = A·B is column-major `N × L` with leading dimension `N`,
//! which is the row-major `(L, N)` result we want; no transpose is ever materialised.
//!
//! Scales. `CUBLASLT_MATMUL_DESC_{A,B}_SCALE_MODE = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F`
//! (CUDA 12.9+, compute capability 9.0) makes cuBLASLt compute
//! `D[i, j] = scale_A[i] · scale_B[j] · Σₖ A[i, k] B[k, j]`, with `scale_A` a device vector of
//! `N` f32 (our per-output-channel weight scales) and `scale_B` one of `L` f32 (our per-token
//! activation scales). Accumulation is f32 (`CUBLAS_COMPUTE_32F`, without
//! `CUBLASLT_MATMUL_DESC_FAST_ACCUM`, so partial sums are promoted to f32 at cuBLAS's
//! interval); D is bf16, f16 or f32.
//!
//! Alignment. FP8 operands need 16-byte aligned pointers and leading dimensions: `K` is padded
//! to [`COLUMN_ALIGN`] by [`Fp8Matrix`], expert row blocks start at multiples of `K` bytes, and
//! D's leading dimension `N` must span a multiple of 16 bytes (`N % 8 == 0` for bf16). A call
//! that does not meet these, or for which cuBLASLt offers no algorithm, runs the reference.
//!
//! Handles and plans. One cuBLASLt handle and one 32 MiB workspace (NVIDIA's recommendation for
//! Hopper) per device, created on first use; the algorithm cuBLASLt's heuristic picks is
//! cached per (device, L, N, K, output dtype), so a sampling loop queries it once per shape.
//!
//! Status: this path type-checks (`scripts/cuda/build.sh check`) but has not run on a GPU yet;
//! its first H100 run must compare it with [`super::reference_fp8_matmul`] (the bound of
//! `cadence_parity::fp8_bounds` applies to both).

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::cuda_backend::cudarc::cublas::sys::cublasOperation_t;
use candle_core::cuda_backend::cudarc::cublaslt::{result as lt, sys};
use candle_core::cuda_backend::cudarc::driver::{
    sys::CUdevice_attribute, CudaSlice, CudaStream, CudaView, DevicePtr, DevicePtrMut, DeviceRepr,
};
use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorage, DeviceId, WrapErr};
use candle_core::{
    bail, CpuStorage, CustomOp2, DType, Device, Layout, Result, Shape, Storage, Tensor,
};
use float8::F8E4M3;

use crate::cuda_view::contiguous;
use half::{bf16, f16};

use crate::fp8::{Fp8Matrix, COLUMN_ALIGN};

/// cuBLASLt workspace per device (NVIDIA's recommendation for Hopper).
const WORKSPACE_BYTES: usize = 32 << 20;

/// Pointer and leading-dimension alignment cuBLASLt's FP8 kernels need.
const ALIGN_BYTES: usize = 16;

/// `x · wᵀ` on the tensor cores, or `None` when this call cannot run there (not a Hopper
/// device, an unaligned shape, an output dtype other than bf16/f16/f32, or no algorithm).
pub(super) fn matmul(x: &Fp8Matrix, w: &Fp8Matrix, out: DType) -> Result<Option<Tensor>> {
    let Device::Cuda(dev) = x.data().device() else {
        return Ok(None);
    };
    let out_bytes = match out {
        DType::BF16 | DType::F16 => 2,
        DType::F32 => 4,
        _ => return Ok(None),
    };
    let (l, n, k) = (x.rows(), w.rows(), x.padded_cols());
    if l == 0
        || n == 0
        || !k.is_multiple_of(COLUMN_ALIGN)
        || !(n * out_bytes).is_multiple_of(ALIGN_BYTES)
    {
        return Ok(None);
    }
    if compute_major(dev)? != 9 {
        return Ok(None);
    }
    let Some(algo) = plan(dev, l, n, k, out)? else {
        return Ok(None);
    };
    let op = Fp8Gemm {
        x_scale: aligned(x.scale())?,
        w_scale: aligned(w.scale())?,
        out,
        algo,
    };
    x.data().apply_op2_no_bwd(w.data(), &op).map(Some)
}

/// `t` itself when its first element is 16-byte aligned within its buffer, else a fresh copy
/// (an expert's slice of a stacked scale vector can start anywhere).
fn aligned(t: &Tensor) -> Result<Tensor> {
    let offset = t.layout().start_offset() * t.dtype().size_in_bytes();
    if offset.is_multiple_of(ALIGN_BYTES) && t.is_contiguous() {
        Ok(t.clone())
    } else {
        t.copy()
    }
}

fn compute_major(dev: &CudaDevice) -> Result<i32> {
    dev.cuda_stream()
        .context()
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
        .w()
}

fn lt_err(what: &str) -> impl Fn(lt::CublasError) -> candle_core::Error + '_ {
    move |e| candle_core::Error::Msg(format!("cuBLASLt {what}: {e}"))
}

/// A cuBLASLt handle and its workspace, one per device.
struct Handle {
    raw: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
}

// SAFETY: the raw handle is only used while the `Mutex` around this value is held, so no two
// threads ever use it at once; cuBLASLt handles are not tied to the creating thread.
unsafe impl Send for Handle {}

fn handle(dev: &CudaDevice) -> Result<Arc<Mutex<Handle>>> {
    type Handles = HashMap<DeviceId, Arc<Mutex<Handle>>>;
    static HANDLES: OnceLock<Mutex<Handles>> = OnceLock::new();
    let mut handles = HANDLES
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| candle_core::Error::Msg("cuBLASLt handle cache poisoned".into()))?;
    if let Some(h) = handles.get(&dev.id()) {
        return Ok(h.clone());
    }
    let stream = dev.cuda_stream();
    stream.context().bind_to_thread().w()?;
    let raw = lt::create_handle().map_err(lt_err("handle creation"))?;
    // SAFETY: cuBLASLt only ever writes the workspace; its initial contents do not matter.
    let workspace = unsafe { stream.alloc::<u8>(WORKSPACE_BYTES) }.w()?;
    let h = Arc::new(Mutex::new(Handle { raw, workspace }));
    handles.insert(dev.id(), h.clone());
    Ok(h)
}

/// A matmul descriptor configured for the TN FP8 GEMM with outer-vector scales.
struct Desc(sys::cublasLtMatmulDesc_t);

impl Desc {
    fn new() -> Result<Self> {
        let raw = lt::create_matmul_desc(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cudaDataType_t::CUDA_R_32F,
        )
        .map_err(lt_err("matmul descriptor"))?;
        let desc = Self(raw);
        desc.set(
            sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
            &cublasOperation_t::CUBLAS_OP_T,
        )?;
        desc.set(
            sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB,
            &cublasOperation_t::CUBLAS_OP_N,
        )?;
        let mode = sys::cublasLtMatmulMatrixScale_t::CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
        desc.set(
            sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_A_SCALE_MODE,
            &mode,
        )?;
        desc.set(
            sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_B_SCALE_MODE,
            &mode,
        )?;
        Ok(desc)
    }

    fn set<T>(&self, attr: sys::cublasLtMatmulDescAttributes_t, value: &T) -> Result<()> {
        // SAFETY: `value` is a live `T` and its size is passed with it; the descriptor is live.
        unsafe {
            lt::set_matmul_desc_attribute(
                self.0,
                attr,
                (value as *const T).cast::<c_void>(),
                std::mem::size_of::<T>(),
            )
        }
        .map_err(lt_err("matmul descriptor attribute"))
    }
}

impl Drop for Desc {
    fn drop(&mut self) {
        // SAFETY: created by `create_matmul_desc` and destroyed once.
        let _ = unsafe { lt::destroy_matmul_desc(self.0) };
    }
}

/// A column-major matrix layout.
struct MatrixLayout(sys::cublasLtMatrixLayout_t);

impl MatrixLayout {
    fn new(dtype: sys::cudaDataType_t, rows: usize, cols: usize, ld: usize) -> Result<Self> {
        lt::create_matrix_layout(dtype, rows as u64, cols as u64, ld as i64)
            .map(Self)
            .map_err(lt_err("matrix layout"))
    }
}

impl Drop for MatrixLayout {
    fn drop(&mut self) {
        // SAFETY: created by `create_matrix_layout` and destroyed once.
        let _ = unsafe { lt::destroy_matrix_layout(self.0) };
    }
}

/// The four layouts of `D (N × L) = Aᵀ (N × K) · B (K × L)`.
struct Layouts {
    a: MatrixLayout,
    b: MatrixLayout,
    d: MatrixLayout,
}

impl Layouts {
    fn new(l: usize, n: usize, k: usize, out: DType) -> Result<Self> {
        let e4m3 = sys::cudaDataType_t::CUDA_R_8F_E4M3;
        let d_type = match out {
            DType::BF16 => sys::cudaDataType_t::CUDA_R_16BF,
            DType::F16 => sys::cudaDataType_t::CUDA_R_16F,
            DType::F32 => sys::cudaDataType_t::CUDA_R_32F,
            other => bail!("FP8 GEMM output dtype {other:?} is not bf16, f16 or f32"),
        };
        Ok(Self {
            a: MatrixLayout::new(e4m3, k, n, k)?,
            b: MatrixLayout::new(e4m3, k, l, k)?,
            d: MatrixLayout::new(d_type, n, l, n)?,
        })
    }
}

/// The algorithm cuBLASLt picks for a shape, cached; `None` when it offers none.
fn plan(
    dev: &CudaDevice,
    l: usize,
    n: usize,
    k: usize,
    out: DType,
) -> Result<Option<sys::cublasLtMatmulAlgo_t>> {
    type Plans = HashMap<(DeviceId, usize, usize, usize, DType), Option<sys::cublasLtMatmulAlgo_t>>;
    static PLANS: OnceLock<Mutex<Plans>> = OnceLock::new();
    let key = (dev.id(), l, n, k, out);
    let plans = PLANS.get_or_init(Default::default);
    if let Some(p) = plans
        .lock()
        .map_err(|_| candle_core::Error::Msg("cuBLASLt plan cache poisoned".into()))?
        .get(&key)
    {
        return Ok(*p);
    }
    let h = handle(dev)?;
    let h = h
        .lock()
        .map_err(|_| candle_core::Error::Msg("cuBLASLt handle poisoned".into()))?;
    let desc = Desc::new()?;
    let layouts = Layouts::new(l, n, k, out)?;
    let pref = lt::create_matmul_pref().map_err(lt_err("preference"))?;
    let workspace = WORKSPACE_BYTES;
    // SAFETY: every descriptor is live for the duration of the calls; `workspace` is a live
    // usize whose size is passed with it.
    let found = unsafe {
        let result = lt::set_matmul_pref_attribute(
            pref,
            sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            (&workspace as *const usize).cast::<c_void>(),
            std::mem::size_of::<usize>(),
        )
        .and_then(|()| {
            lt::get_matmul_algo_heuristic(
                h.raw,
                desc.0,
                layouts.a.0,
                layouts.b.0,
                layouts.d.0,
                layouts.d.0,
                pref,
            )
        });
        let _ = lt::destroy_matmul_pref(pref);
        result
    };
    let algo = match found {
        Ok(heuristic) => Some(heuristic.algo),
        Err(lt::CublasError(sys::cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED)) => None,
        Err(e) => return Err(lt_err("algorithm heuristic")(e)),
    };
    plans
        .lock()
        .map_err(|_| candle_core::Error::Msg("cuBLASLt plan cache poisoned".into()))?
        .insert(key, algo);
    Ok(algo)
}

/// The GEMM as a candle op on (activation data `(L, K)`, weight data `(N, K)`), both
/// contiguous e4m3 on one CUDA device; the scales travel in the op.
struct Fp8Gemm {
    /// `(L,)` f32, 16-byte aligned.
    x_scale: Tensor,
    /// `(N,)` f32, 16-byte aligned.
    w_scale: Tensor,
    out: DType,
    algo: sys::cublasLtMatmulAlgo_t,
}

/// The contiguous view `layout` describes in `storage`.
fn view<'a, T: CudaDType>(
    storage: &'a CudaStorage,
    layout: &Layout,
    what: &str,
) -> Result<CudaView<'a, T>> {
    contiguous(storage, layout, "FP8 GEMM", what)
}

/// The contiguous f32 view of a scale tensor's storage.
fn scale_view<'a>(storage: &'a Storage, layout: &Layout, what: &str) -> Result<CudaView<'a, f32>> {
    match storage {
        Storage::Cuda(s) => view::<f32>(s, layout, what),
        _ => bail!("FP8 GEMM: the {what} must be on the CUDA device of the operands"),
    }
}

impl CustomOp2 for Fp8Gemm {
    fn name(&self) -> &'static str {
        "cadence-fp8-gemm"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("the cuBLASLt FP8 GEMM runs on CUDA devices only")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (l, k) = xl.shape().dims2()?;
        let (n, _) = wl.shape().dims2()?;
        let x = view::<F8E4M3>(xs, xl, "the activation")?;
        let w = view::<F8E4M3>(ws, wl, "the weight")?;
        let storage = match self.out {
            DType::BF16 => self.launch::<bf16>(&xs.device, &x, &w, (l, n, k))?,
            DType::F16 => self.launch::<f16>(&xs.device, &x, &w, (l, n, k))?,
            DType::F32 => self.launch::<f32>(&xs.device, &x, &w, (l, n, k))?,
            other => bail!("FP8 GEMM output dtype {other:?} is not bf16, f16 or f32"),
        };
        Ok((storage, Shape::from((l, n))))
    }
}

impl Fp8Gemm {
    /// Enqueues `D = diag(s_w) · W · Xᵀ · diag(s_x)` on candle's stream into a new `(L, N)`.
    fn launch<T: CudaDType + DeviceRepr>(
        &self,
        dev: &CudaDevice,
        x: &CudaView<'_, F8E4M3>,
        w: &CudaView<'_, F8E4M3>,
        (l, n, k): (usize, usize, usize),
    ) -> Result<CudaStorage> {
        let stream: Arc<CudaStream> = dev.cuda_stream();
        let (xs_storage, xs_layout) = self.x_scale.storage_and_layout();
        let (ws_storage, ws_layout) = self.w_scale.storage_and_layout();
        let x_scale = scale_view(&xs_storage, xs_layout, "activation scales")?;
        let w_scale = scale_view(&ws_storage, ws_layout, "weight scales")?;

        let h = handle(dev)?;
        let mut h = h
            .lock()
            .map_err(|_| candle_core::Error::Msg("cuBLASLt handle poisoned".into()))?;
        // SAFETY: cuBLASLt writes every element of D (beta = 0 never reads C).
        let mut out = unsafe { stream.alloc::<T>(l * n) }.w()?;
        let desc = Desc::new()?;
        let layouts = Layouts::new(l, n, k, self.out)?;
        {
            let (w_scale_ptr, _w_scale_use) = w_scale.device_ptr(&stream);
            let (x_scale_ptr, _x_scale_use) = x_scale.device_ptr(&stream);
            desc.set(
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                &w_scale_ptr,
            )?;
            desc.set(
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                &x_scale_ptr,
            )?;
            let raw = h.raw;
            let (a_ptr, _a_use) = w.device_ptr(&stream);
            let (b_ptr, _b_use) = x.device_ptr(&stream);
            let (d_ptr, _d_use) = out.device_ptr_mut(&stream);
            let (ws_ptr, _ws_use) = h.workspace.device_ptr_mut(&stream);
            let (alpha, beta) = (1.0f32, 0.0f32);
            // SAFETY: every pointer is a live device allocation on `stream` of the size the
            // layouts describe (checked shapes, contiguous views); the descriptors outlive the
            // call, which only enqueues work on `stream`; the `_use` guards record that use
            // when they drop at the end of this block.
            unsafe {
                lt::matmul(
                    raw,
                    desc.0,
                    (&alpha as *const f32).cast(),
                    (&beta as *const f32).cast(),
                    a_ptr as *const c_void,
                    layouts.a.0,
                    b_ptr as *const c_void,
                    layouts.b.0,
                    d_ptr as *const c_void,
                    layouts.d.0,
                    d_ptr as *mut c_void,
                    layouts.d.0,
                    &self.algo,
                    ws_ptr as *mut c_void,
                    WORKSPACE_BYTES,
                    stream.cu_stream() as sys::cudaStream_t,
                )
            }
            .map_err(lt_err("matmul"))?;
        }
        Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
    }
}
