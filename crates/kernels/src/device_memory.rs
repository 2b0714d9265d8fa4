//! How much memory a device has: what the memory plan budgets against when the caller gives
//! no `--max-memory`, and what a request's estimate is checked against on the CPU.

use candle_core::Device;

/// A device's memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Free now (on the CPU: the kernel's `MemAvailable`, what can be allocated without
    /// swapping).
    pub free: u64,
    /// In all.
    pub total: u64,
}

/// The memory of `device`, or `None` where it cannot be read (another OS, no driver).
pub fn device_memory(device: &Device) -> Option<DeviceMemory> {
    match device {
        Device::Cpu => host_memory(),
        #[cfg(feature = "cuda")]
        Device::Cuda(dev) => {
            let (free, total) = dev.cuda_stream().context().mem_get_info().ok()?;
            Some(DeviceMemory {
                free: free as u64,
                total: total as u64,
            })
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The host's memory from `/proc/meminfo` (Linux).
fn host_memory() -> Option<DeviceMemory> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some(DeviceMemory {
        free: field("MemAvailable:")?,
        total: field("MemTotal:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_reports_its_memory() {
        if cfg!(target_os = "linux") {
            let m = device_memory(&Device::Cpu).unwrap();
            assert!(m.free > 0 && m.free <= m.total, "{m:?}");
        }
    }
}
