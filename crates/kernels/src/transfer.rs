//! Weights that live in host memory and visit the device: the host copy of a tensor, and a stack
//! of layers streamed to the device a few layers ahead of the one computing.
//!
//! This is how a model larger than the device runs (the memory plan's last rung, "block
//! streaming"): each layer's weights wait in host memory and are copied to the device shortly
//! before the layer runs, then freed. On CUDA (feature `cuda`) the host copies are page-locked
//! ("pinned") and the uploads run on a copy stream of their own, so copying layer `i + 1` overlaps
//! computing layer `i`; cudarc's event tracking makes the compute stream wait for a copy before it
//! reads the layer. Elsewhere an upload is a plain `to_device`, which on the CPU copies nothing.
//!
//! The model code does not change with placement: it folds over its layers with
//! [`LayerStack::run`], whatever the stack holds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Tensor};

use cadence_core::{Result, TensorTree};

/// A tensor's host-memory copy, ready to be uploaded to a device again.
#[derive(Debug)]
pub struct HostCopy {
    data: HostData,
    dtype: DType,
    shape: Vec<usize>,
}

#[derive(Debug)]
enum HostData {
    /// An ordinary CPU tensor (pageable memory).
    Tensor(Tensor),
    /// Page-locked memory, uploaded asynchronously on a copy stream.
    #[cfg(feature = "cuda")]
    Pinned(cuda::PinnedBytes),
}

impl HostCopy {
    /// Copies `tensor` (on any device) into host memory; page-locked memory when `for_device`
    /// is a CUDA device, so uploads to it can overlap computation.
    pub fn of(tensor: &Tensor, for_device: &Device) -> Result<Self> {
        let (dtype, shape) = (tensor.dtype(), tensor.dims().to_vec());
        #[cfg(feature = "cuda")]
        if let Device::Cuda(dev) = for_device {
            return Ok(Self {
                data: HostData::Pinned(cuda::PinnedBytes::of(tensor, dev)?),
                dtype,
                shape,
            });
        }
        let _ = for_device;
        Ok(Self {
            data: HostData::Tensor(tensor.to_device(&Device::Cpu)?),
            dtype,
            shape,
        })
    }

    /// The tensor on `device`. On CUDA the copy is queued on the device's copy stream and this
    /// returns at once; on other devices it is a plain copy.
    pub fn upload(&self, device: &Device) -> Result<Tensor> {
        match &self.data {
            HostData::Tensor(t) => Ok(t.to_device(device)?),
            #[cfg(feature = "cuda")]
            HostData::Pinned(p) => p.upload(device, self.dtype, &self.shape),
        }
    }

    /// Bytes of host memory it holds.
    pub fn bytes(&self) -> u64 {
        (self.shape.iter().product::<usize>() * self.dtype.size_in_bytes()) as u64
    }
}

/// How many layers a streamed stack keeps in flight beyond the one computing: the next layer's
/// copy overlaps this layer's compute, and one more absorbs the variation in layer times.
pub const STREAM_LOOKAHEAD: usize = 2;

/// A model's repeated layers, either resident on the compute device or parked in host memory
/// and streamed to the device [`STREAM_LOOKAHEAD`] layers ahead.
#[derive(Debug)]
pub struct LayerStack<L> {
    holding: Holding<L>,
    /// The most layer bytes the stream held on the device at once since the last
    /// [`LayerStack::take_peak_streamed`] (the placement ledger reads it).
    peak_streamed: AtomicU64,
}

#[derive(Debug)]
enum Holding<L> {
    Resident(Vec<L>),
    Streamed {
        layers: Vec<Parked<L>>,
        device: Device,
    },
}

/// A layer in host memory: its structure with empty tensors (a template), and its tensors'
/// host copies in [`TensorTree`] order.
#[derive(Debug)]
struct Parked<L> {
    shell: L,
    copies: Vec<HostCopy>,
}

impl<L: TensorTree> Parked<L> {
    fn park(layer: &L, device: &Device) -> Result<Self> {
        let mut copies = Vec::new();
        let shell = layer.map_tensors(&mut |t| {
            copies.push(HostCopy::of(t, device)?);
            Ok(Tensor::zeros(0, t.dtype(), &Device::Cpu)?)
        })?;
        Ok(Self { shell, copies })
    }

    fn upload(&self, device: &Device) -> Result<L> {
        let mut next = self.copies.iter();
        self.shell.map_tensors(&mut |_| match next.next() {
            Some(copy) => copy.upload(device),
            None => Err(cadence_core::Error::Internal(
                "a parked layer has fewer host copies than tensors".into(),
            )),
        })
    }

    fn bytes(&self) -> u64 {
        self.copies.iter().map(HostCopy::bytes).sum()
    }
}

impl<L: TensorTree> LayerStack<L> {
    /// Layers held where they are (loaded onto the compute device).
    pub fn resident(layers: Vec<L>) -> Self {
        Self {
            holding: Holding::Resident(layers),
            peak_streamed: AtomicU64::new(0),
        }
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        match &self.holding {
            Holding::Resident(l) => l.len(),
            Holding::Streamed { layers, .. } => layers.len(),
        }
    }

    /// Whether the stack has no layers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the layers are parked in host memory and streamed.
    pub fn is_streamed(&self) -> bool {
        matches!(self.holding, Holding::Streamed { .. })
    }

    /// The resident layers (`None` when streamed).
    pub fn resident_layers(&self) -> Option<&[L]> {
        match &self.holding {
            Holding::Resident(l) => Some(l),
            Holding::Streamed { .. } => None,
        }
    }

    /// The same layers resident on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let layers: Result<Vec<L>> = match &self.holding {
            Holding::Resident(l) => l.iter().map(|l| l.to_device(device)).collect(),
            Holding::Streamed { layers, .. } => layers.iter().map(|p| p.upload(device)).collect(),
        };
        Ok(Self::resident(layers?))
    }

    /// The same layers parked in host memory, streamed to `device` when run. Each layer is
    /// freed from its device as soon as its host copy exists, so parking a model needs one
    /// layer of headroom, not a second model.
    pub fn into_streamed(self, device: &Device) -> Result<Self> {
        let layers = match self.holding {
            Holding::Resident(layers) => layers
                .into_iter()
                .map(|l| Parked::park(&l, device))
                .collect::<Result<Vec<_>>>()?,
            Holding::Streamed { layers, .. } => layers
                .iter()
                .map(|p| Parked::park(&p.upload(&Device::Cpu)?, device))
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(Self {
            holding: Holding::Streamed {
                layers,
                device: device.clone(),
            },
            peak_streamed: AtomicU64::new(0),
        })
    }

    /// Bytes the layers hold on their device while idle (0 when streamed: only the layers in
    /// flight are on the device, see [`LayerStack::take_peak_streamed`]).
    pub fn resident_bytes(&self) -> u64 {
        match &self.holding {
            Holding::Resident(l) => l.tensor_bytes(),
            Holding::Streamed { .. } => 0,
        }
    }

    /// Bytes of host memory the parked layers hold (0 when resident).
    pub fn host_bytes(&self) -> u64 {
        match &self.holding {
            Holding::Resident(_) => 0,
            Holding::Streamed { layers, .. } => layers.iter().map(Parked::bytes).sum(),
        }
    }

    /// The most bytes of streamed layers that were on the device at once since the last call.
    pub fn take_peak_streamed(&self) -> u64 {
        self.peak_streamed.swap(0, Ordering::Relaxed)
    }

    /// Folds `f` over the layers in order: `state = f(state, index, layer)`. Streamed layers are
    /// uploaded [`STREAM_LOOKAHEAD`] ahead and each is freed as soon as it has run.
    pub fn run<T>(&self, init: T, mut f: impl FnMut(T, usize, &L) -> Result<T>) -> Result<T> {
        match &self.holding {
            Holding::Resident(layers) => layers
                .iter()
                .enumerate()
                .try_fold(init, |state, (i, layer)| f(state, i, layer)),
            Holding::Streamed { layers, device } => {
                let mut state = init;
                let mut in_flight: VecDeque<(L, u64)> = VecDeque::new();
                let mut next = 0;
                for i in 0..layers.len() {
                    while next < layers.len() && next <= i + STREAM_LOOKAHEAD {
                        in_flight.push_back((layers[next].upload(device)?, layers[next].bytes()));
                        next += 1;
                    }
                    let live: u64 = in_flight.iter().map(|(_, b)| b).sum();
                    self.peak_streamed.fetch_max(live, Ordering::Relaxed);
                    let (layer, _) = in_flight.pop_front().ok_or_else(|| {
                        cadence_core::Error::Internal("the layer stream ran dry".into())
                    })?;
                    state = f(state, i, &layer)?;
                }
                Ok(state)
            }
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    //! Page-locked host copies, uploaded on a per-device copy stream. Written against cudarc's
    //! event tracking (on by default in candle): a slice allocated and written on the copy
    //! stream records a write event that every later use on the compute stream waits for.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{CudaStream, DeviceRepr, PinnedHostSlice};
    use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorage, DeviceId};
    use candle_core::op::BackpropOp;
    use candle_core::{CpuStorage, DType, Device, Storage, Tensor};

    use cadence_core::{Error, Result};

    /// A tensor's bytes in page-locked host memory.
    #[derive(Debug)]
    pub(super) struct PinnedBytes(PinnedHostSlice<u8>);

    impl PinnedBytes {
        pub(super) fn of(tensor: &Tensor, dev: &CudaDevice) -> Result<Self> {
            let host = tensor
                .to_device(&Device::Cpu)?
                .flatten_all()?
                .contiguous()?;
            let (storage, layout) = host.storage_and_layout();
            let Storage::Cpu(cpu) = &*storage else {
                return Err(Error::Internal("a host copy was not on the host".into()));
            };
            let size = host.dtype().size_in_bytes();
            let start = layout.start_offset() * size;
            let bytes = &element_bytes(cpu)?[start..start + host.elem_count() * size];
            let context = dev.cuda_stream().context().clone();
            // SAFETY: every byte is written right below, before anything reads the slice.
            let mut pinned = unsafe { context.alloc_pinned::<u8>(bytes.len()) }.map_err(cuda)?;
            pinned.as_mut_slice().map_err(cuda)?.copy_from_slice(bytes);
            Ok(Self(pinned))
        }

        pub(super) fn upload(
            &self,
            device: &Device,
            dtype: DType,
            shape: &[usize],
        ) -> Result<Tensor> {
            let Device::Cuda(dev) = device else {
                return Err(Error::Internal(format!(
                    "a pinned host copy uploads to a CUDA device, not {device:?}"
                )));
            };
            let storage = match dtype {
                DType::U8 => self.upload_as::<u8>(dev)?,
                DType::U32 => self.upload_as::<u32>(dev)?,
                DType::I64 => self.upload_as::<i64>(dev)?,
                DType::BF16 => self.upload_as::<half::bf16>(dev)?,
                DType::F16 => self.upload_as::<half::f16>(dev)?,
                DType::F32 => self.upload_as::<f32>(dev)?,
                DType::F64 => self.upload_as::<f64>(dev)?,
                DType::F8E4M3 => self.upload_as::<float8::F8E4M3>(dev)?,
                other => {
                    return Err(Error::Internal(format!(
                        "streaming {other:?} tensors is not supported"
                    )))
                }
            };
            Ok(Tensor::from_storage(
                Storage::Cuda(storage),
                shape.to_vec(),
                BackpropOp::none(),
                false,
            ))
        }

        /// A new device slice of `T` holding these bytes, written on the copy stream.
        fn upload_as<T: DeviceRepr + CudaDType>(&self, dev: &CudaDevice) -> Result<CudaStorage> {
            let stream = copy_stream(dev)?;
            let len = self.0.len() / std::mem::size_of::<T>();
            // SAFETY: the copy below writes every byte of the slice before any use of it, and
            // cudarc orders those uses after the copy (the slice's write event).
            let mut slice = unsafe { stream.alloc::<T>(len) }.map_err(cuda)?;
            {
                // SAFETY: the view covers exactly the slice's bytes.
                let mut bytes =
                    unsafe { slice.transmute_mut::<u8>(self.0.len()) }.ok_or_else(|| {
                        Error::Internal("a device slice is shorter than its data".into())
                    })?;
                stream.memcpy_htod(&self.0, &mut bytes).map_err(cuda)?;
            }
            Ok(T::wrap_cuda_slice(slice, dev.clone()))
        }
    }

    /// The copy stream of `dev` (one per device, created on first use).
    fn copy_stream(dev: &CudaDevice) -> Result<Arc<CudaStream>> {
        static STREAMS: OnceLock<Mutex<HashMap<DeviceId, Arc<CudaStream>>>> = OnceLock::new();
        let mut streams = STREAMS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(s) = streams.get(&dev.id()) {
            return Ok(s.clone());
        }
        let stream = dev.cuda_stream().context().new_stream().map_err(cuda)?;
        streams.insert(dev.id(), stream.clone());
        Ok(stream)
    }

    /// The element bytes of a CPU storage (plain-old-data element types).
    fn element_bytes(cpu: &CpuStorage) -> Result<&[u8]> {
        fn bytes<T>(v: &[T]) -> &[u8] {
            // SAFETY: the element types below have no padding and no invalid bit patterns as
            // bytes; the view covers the same memory for its lifetime.
            unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
        }
        Ok(match cpu {
            CpuStorage::U8(v) => bytes(v),
            CpuStorage::U32(v) => bytes(v),
            CpuStorage::I64(v) => bytes(v),
            CpuStorage::BF16(v) => bytes(v),
            CpuStorage::F16(v) => bytes(v),
            CpuStorage::F32(v) => bytes(v),
            CpuStorage::F64(v) => bytes(v),
            CpuStorage::F8E4M3(v) => bytes(v),
            other => {
                return Err(Error::Internal(format!(
                    "streaming {:?} tensors is not supported",
                    BackendStorage::dtype(other)
                )))
            }
        })
    }

    fn cuda(e: impl std::fmt::Display) -> Error {
        Error::Candle(candle_core::Error::Msg(format!("CUDA: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone)]
    struct Scale {
        w: Tensor,
        b: Tensor,
    }
    cadence_core::tensor_tree!(Scale { w, b });

    fn stack(n: usize) -> LayerStack<Scale> {
        let dev = Device::Cpu;
        LayerStack::resident(
            (0..n)
                .map(|i| Scale {
                    w: Tensor::full(i as f32 + 1.0, 4, &dev).unwrap(),
                    b: Tensor::full(0.5f32, 4, &dev).unwrap(),
                })
                .collect(),
        )
    }

    fn run(s: &LayerStack<Scale>) -> Vec<f32> {
        let x = Tensor::ones(4, DType::F32, &Device::Cpu).unwrap();
        s.run(x, |x, _, l| Ok(x.mul(&l.w)?.add(&l.b)?))
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn streamed_layers_compute_what_resident_ones_do() {
        let resident = stack(6);
        let streamed = stack(6).into_streamed(&Device::Cpu).unwrap();
        assert!(streamed.is_streamed() && streamed.resident_bytes() == 0);
        assert_eq!(streamed.host_bytes(), resident.resident_bytes());
        assert_eq!(run(&streamed), run(&resident));
        // Back to resident, through the host copies.
        let back = streamed.to_device(&Device::Cpu).unwrap();
        assert_eq!(run(&back), run(&resident));
    }

    #[test]
    fn the_stream_holds_at_most_the_lookahead() {
        let resident = stack(6);
        let per_layer = resident.resident_bytes() / 6;
        let streamed = stack(6).into_streamed(&Device::Cpu).unwrap();
        run(&streamed);
        assert_eq!(
            streamed.take_peak_streamed(),
            (STREAM_LOOKAHEAD as u64 + 1) * per_layer
        );
        assert_eq!(streamed.take_peak_streamed(), 0, "the peak resets");
        // A stack shorter than the lookahead holds all of itself.
        let short = stack(2).into_streamed(&Device::Cpu).unwrap();
        run(&short);
        assert_eq!(short.take_peak_streamed(), 2 * per_layer);
    }
}
