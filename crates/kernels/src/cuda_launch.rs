//! What every custom-kernel launch shares: the precondition of the sm_90a builds (a Hopper
//! device, bf16 operands), loading a function from an embedded cubin once per device, and
//! filling outputs with NaN for the self-tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::cuda_backend::cudarc::driver::{sys, CudaFunction, CudaModule, CudaStream};
use candle_core::cuda_backend::cudarc::nvrtc::Ptx;
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::{bail, DType, Device, Result, Tensor};

/// The CUDA device of `device` when the kernels can run there with these named operands, else
/// why not: a CUDA device of compute capability 9.x (the cubins are sm_90a) and bf16 operands.
pub(crate) fn hopper_bf16<'a>(
    device: &'a Device,
    operands: &[(&str, &Tensor)],
) -> Result<std::result::Result<&'a CudaDevice, String>> {
    let Device::Cuda(dev) = device else {
        return Ok(Err(format!(
            "the tensors are on {:?}, not a CUDA device",
            device.location()
        )));
    };
    let major = dev
        .cuda_stream()
        .context()
        .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
        .w()?;
    if major != 9 {
        return Ok(Err(format!(
            "the kernels are built for compute capability 9.x (sm_90a), the device has {major}.x"
        )));
    }
    for (name, t) in operands {
        if t.dtype() != DType::BF16 {
            return Ok(Err(format!(
                "the {name} is {:?}; the kernels take bf16",
                t.dtype()
            )));
        }
    }
    Ok(Ok(dev))
}

/// The function `entry` of `cubin` on `dev`, loaded once per (device, entry), with its dynamic
/// shared-memory limit raised to `smem_bytes` (0 leaves the default). An empty or absent cubin
/// (a type-checking build with scripts/cuda/fake-nvcc) is the error `not_compiled`.
pub(crate) fn load_function(
    dev: &CudaDevice,
    cubin: Option<&'static [u8]>,
    entry: &'static str,
    smem_bytes: usize,
    not_compiled: impl FnOnce() -> String,
) -> Result<CudaFunction> {
    type Loaded = HashMap<(candle_core::cuda_backend::DeviceId, &'static str), CudaFunction>;
    static LOADED: OnceLock<Mutex<Loaded>> = OnceLock::new();
    let key = (dev.id(), entry);
    let mut loaded = LOADED
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| candle_core::Error::Msg("CUDA kernel cache poisoned".into()))?;
    if let Some(f) = loaded.get(&key) {
        return Ok(f.clone());
    }
    let cubin = match cubin {
        Some(bytes) if !bytes.is_empty() => bytes,
        _ => bail!("{}", not_compiled()),
    };
    let module: Arc<CudaModule> = dev
        .cuda_stream()
        .context()
        .load_module(Ptx::from_binary(cubin.to_vec()))
        .w()?;
    let f = module.load_function(entry).w()?;
    if smem_bytes > 0 {
        f.set_attribute(
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem_bytes as i32,
        )
        .w()?;
    }
    loaded.insert(key, f.clone());
    Ok(f)
}

/// Fills `len` bf16 values at `ptr` with NaN on `stream`: an element a kernel fails to write
/// stays NaN.
pub(crate) fn poison_bf16(ptr: sys::CUdeviceptr, len: usize, stream: &CudaStream) -> Result<()> {
    // SAFETY: callers pass `ptr` addressing `len` u16 values of a live allocation on this
    // stream's context.
    unsafe { sys::cuMemsetD16Async(ptr, 0x7FC0, len, stream.cu_stream()) }
        .result()
        .w()
}

/// [`poison_bf16`] for `len` f32 values.
pub(crate) fn poison_f32(ptr: sys::CUdeviceptr, len: usize, stream: &CudaStream) -> Result<()> {
    // SAFETY: as for poison_bf16, with `len` u32 values.
    unsafe { sys::cuMemsetD32Async(ptr, 0x7FC0_0000, len, stream.cu_stream()) }
        .result()
        .w()
}
