//! The one way the CUDA launches read a candle tensor's device memory: the contiguous range
//! its layout describes, typed, with an error naming the op and the operand otherwise.

use candle_core::cuda_backend::cudarc::driver::CudaView;
use candle_core::cuda_backend::{CudaDType, CudaStorage};
use candle_core::{bail, Layout, Result};

/// The `T` elements `layout` covers in `storage`; `op` and `what` name the call in the error
/// when the layout is not contiguous (or the storage holds another dtype).
pub(crate) fn contiguous<'a, T: CudaDType>(
    storage: &'a CudaStorage,
    layout: &Layout,
    op: &str,
    what: &str,
) -> Result<CudaView<'a, T>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(storage.as_cuda_slice::<T>()?.slice(start..end)),
        None => bail!("{op}: {what} must be contiguous"),
    }
}
