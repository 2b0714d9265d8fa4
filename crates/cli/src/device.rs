//! `--device`: where the models run.

use candle_core::Device;

use crate::args::DeviceChoice;
use crate::errors::{CliError, ExitKind};

/// The chosen device and its name for messages and summaries.
pub struct Selected {
    /// The device the engine computes on.
    pub device: Device,
    /// `cpu` or `cuda:0`.
    pub name: String,
}

impl Selected {
    fn cpu() -> Self {
        Self {
            device: Device::Cpu,
            name: "cpu".into(),
        }
    }
}

/// Resolves `--device`.
pub fn select(choice: DeviceChoice) -> Result<Selected, CliError> {
    match choice {
        DeviceChoice::Cpu => Ok(Selected::cpu()),
        DeviceChoice::Cuda => cuda(),
        DeviceChoice::Auto if cfg!(feature = "cuda") => cuda().or_else(|e| {
            tracing::warn!("{e}; running on the CPU");
            Ok(Selected::cpu())
        }),
        DeviceChoice::Auto => Ok(Selected::cpu()),
    }
}

/// The first GPU.
fn cuda() -> Result<Selected, CliError> {
    Ok(Selected {
        device: cuda_device()?,
        name: "cuda:0".into(),
    })
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device, CliError> {
    // The driver library is loaded at run time, on first use; when it is missing (a CUDA build
    // on a machine without the NVIDIA driver) cudarc panics instead of returning an error.
    // Catch that (silently: the message below says it) so the user gets the usual error and
    // `--device auto` falls back to the CPU.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let created = std::panic::catch_unwind(|| Device::new_cuda(0));
    std::panic::set_hook(hook);
    match created {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => Err(CliError::new(
            ExitKind::Device,
            format!(
                "no usable CUDA GPU ({}): check the driver with `nvidia-smi`, or use --device cpu",
                e.to_string().lines().next().unwrap_or("unknown error")
            ),
        )),
        Err(_) => Err(CliError::new(
            ExitKind::Device,
            "no CUDA driver: the NVIDIA driver library (libcuda.so) could not be loaded; \
             install the driver (check with `nvidia-smi`), or use --device cpu",
        )),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device, CliError> {
    Err(CliError::new(
        ExitKind::Device,
        "this cadence was built without CUDA support: rebuild it with \
         `cargo build --release -p cadence-cli --features cuda` (needs the CUDA toolkit), \
         or use --device cpu",
    ))
}

#[cfg(all(test, not(feature = "cuda")))]
mod tests {
    use super::*;

    #[test]
    fn cuda_without_the_feature_names_the_build_flag() {
        let e = select(DeviceChoice::Cuda).err().unwrap();
        assert_eq!(e.kind, ExitKind::Device);
        assert!(e.message.contains("--features cuda"), "{}", e.message);
        assert_eq!(select(DeviceChoice::Auto).unwrap().name, "cpu");
    }
}
