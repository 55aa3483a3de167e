//! Where a run computes: `cpu` (this project's kernels, `lt-kernels`) or `cuda[:N]` (candle's CUDA
//! backend, in builds with the `cuda` feature). A run's results do not depend on the device it was
//! trained on except through floating-point summation order, so the device is not a hyperparameter:
//! it is not in a run's folder name, and a run started on one device resumes on another.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::Error;

/// A device as written on the command line: `cpu`, `cuda` (GPU 0) or `cuda:N`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU.
    #[default]
    Cpu,
    /// The NVIDIA GPU with this ordinal.
    Cuda(usize),
}

impl DeviceSpec {
    /// Opens the device. On a CUDA device this loads the driver and CUDA's libraries; a build
    /// without the `cuda` feature, a machine without a driver, or a missing GPU is an error that
    /// says which.
    pub fn open(self) -> Result<Device, Error> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) if !candle_core::utils::cuda_is_available() => Err(Error::Config(format!(
                "--device cuda:{n}: this build of lt has no CUDA support; build it with `--features cuda` \
                 (README: Training on a GPU)"
            ))),
            DeviceSpec::Cuda(n) => {
                // cudarc panics where a library it loads at run time is missing; say which instead
                // (with the panic hook quiet meanwhile: the error below is the one message).
                let hook = std::panic::take_hook();
                std::panic::set_hook(Box::new(|_| {}));
                let opened = std::panic::catch_unwind(|| Device::new_cuda(n));
                std::panic::set_hook(hook);
                match opened {
                    Ok(Ok(device)) => Ok(device),
                    Ok(Err(e)) => Err(Error::Config(format!("--device cuda:{n}: {e}"))),
                    Err(panic) => {
                        let why = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "the CUDA libraries could not be loaded".into());
                        // cudarc's message goes on with every file name it tried.
                        let why = why.split(" - searched for").next().unwrap_or_default();
                        Err(Error::Config(format!(
                            "--device cuda:{n}: {why} (is the NVIDIA driver installed, and are cuBLAS, cuRAND and \
                             NVRTC on LD_LIBRARY_PATH? `eval \"$(xtask/cuda/toolkit.sh --runtime)\"` provides them)"
                        )))
                    }
                }
            }
        }
    }

    /// Whether this is a CUDA device.
    pub fn is_cuda(self) -> bool {
        matches!(self, DeviceSpec::Cuda(_))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Config(format!("invalid device {s:?}: {why} (write cpu, cuda or cuda:N)"));
        match s.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceSpec::Cuda).map_err(|_| bad("the GPU's number is not a number")),
                None => Err(bad("unknown device")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_devices() {
        for (text, spec) in [("cpu", DeviceSpec::Cpu), ("cuda", DeviceSpec::Cuda(0)), ("cuda:3", DeviceSpec::Cuda(3))] {
            assert_eq!(text.parse::<DeviceSpec>().ok(), Some(spec));
        }
        assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
        for bad in ["", "tpu", "cuda:", "cuda:x", "cuda:-1"] {
            let e = bad.parse::<DeviceSpec>().err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("write cpu, cuda or cuda:N"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_cpu_opens_and_cuda_says_why_not_without_the_feature() {
        assert!(DeviceSpec::Cpu.open().is_ok_and(|d| d.is_cpu()));
        if !candle_core::utils::cuda_is_available() {
            let e = DeviceSpec::Cuda(0).open().err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
