//! Where the networks run: the `--device auto|cpu|cuda` choice that every binary shares.
//!
//! `auto` means the same everywhere: CUDA device 0 when this build has the `cuda` feature, the
//! CUDA libraries can be loaded and a GPU answers; else the CPU. [`SelectedDevice::summary`] is
//! the one line a binary logs to say which, and why.
//!
//! A `cuda` build made with `tools/cuda/build.sh` loads the CUDA libraries on first use, not at
//! start-up, so it runs on a machine with no GPU and no driver. The probe here looks for the
//! libraries first, so that a missing one is a CPU fallback (or, for `cuda`, an error naming it)
//! and not a panic inside the first CUDA call.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{MqeError, Result};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The GPU when there is a usable one, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device 0, or an error that says why not.
    Cuda,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(format!("`{other}` is not a device: use auto, cpu or cuda")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        })
    }
}

/// The device and the line that says how it was chosen.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    pub device: Device,
    /// For example `device: CPU (--device auto: no CUDA driver library (libcuda.so.1 not found; ...))`.
    pub summary: String,
}

/// Opens the device `choice` asks for (see the module doc for what `auto` means).
/// `device` in words for messages: "the CPU" or "CUDA device N".
pub fn device_label(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "the CPU".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("CUDA device {gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("Metal device {gpu_id}"),
    }
}

pub fn select_device(choice: DeviceChoice) -> Result<SelectedDevice> {
    let cpu = |why: String| SelectedDevice {
        device: Device::Cpu,
        summary: format!("device: CPU ({why})"),
    };
    match choice {
        DeviceChoice::Cpu => Ok(cpu("--device cpu".into())),
        DeviceChoice::Auto => match open_cuda() {
            Ok(device) => Ok(device),
            Err(why) => Ok(cpu(format!("--device auto: {why}"))),
        },
        DeviceChoice::Cuda => open_cuda().map_err(|reason| MqeError::NoDevice {
            requested: "cuda",
            reason,
        }),
    }
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> std::result::Result<SelectedDevice, String> {
    Err("this build has no CUDA support (build with tools/cuda/build.sh)".into())
}

#[cfg(feature = "cuda")]
fn open_cuda() -> std::result::Result<SelectedDevice, String> {
    cuda_probe::missing_library()?;
    let device = Device::new_cuda(0).map_err(|e| format!("CUDA device 0 did not open: {e}"))?;
    Ok(SelectedDevice {
        device,
        summary: "device: CUDA device 0".into(),
    })
}

#[cfg(feature = "cuda")]
mod cuda_probe {
    /// The libraries candle's CUDA backend loads, each as the file names it may have (CUDA 13
    /// sonames first). The driver's comes with the GPU driver, the others with the toolkit or
    /// the `nvidia-*` Python wheels.
    const LIBRARIES: [(&str, &[&str]); 5] = [
        ("CUDA driver", &["libcuda.so.1", "libcuda.so"]),
        (
            "NVRTC",
            &["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"],
        ),
        (
            "cuBLAS",
            &["libcublas.so.13", "libcublas.so.12", "libcublas.so"],
        ),
        (
            "cuBLASLt",
            &["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"],
        ),
        ("cuRAND", &["libcurand.so.10", "libcurand.so"]),
    ];

    /// Ok when every library loads; else which one is missing and how to fix it.
    pub(super) fn missing_library() -> Result<(), String> {
        for (what, names) in LIBRARIES {
            // SAFETY: loading runs the library's initialisers. These are NVIDIA's CUDA libraries,
            // the same files candle's CUDA backend loads on its first call; their initialisers
            // take no arguments and touch no memory of ours. The handle is dropped at once.
            let found = names
                .iter()
                .any(|name| unsafe { libloading::Library::new(*name) }.is_ok());
            if !found {
                return Err(format!(
                    "no {what} library ({} not found; add its folder to LD_LIBRARY_PATH)",
                    names[0]
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_values_parse_and_print_back() {
        for choice in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda] {
            assert_eq!(choice.to_string().parse::<DeviceChoice>(), Ok(choice));
        }
        let err = "gpu".parse::<DeviceChoice>().unwrap_err();
        assert!(err.contains("auto, cpu or cuda"), "{err}");
    }

    #[test]
    fn auto_takes_the_gpu_only_when_cuda_opens_and_says_which() {
        let auto = select_device(DeviceChoice::Auto).unwrap();
        let cuda = select_device(DeviceChoice::Cuda);
        match cuda {
            Ok(gpu) => {
                assert!(
                    !auto.device.is_cpu(),
                    "auto chose the CPU beside a usable GPU"
                );
                assert_eq!(auto.summary, gpu.summary);
            }
            Err(err) => {
                assert!(auto.device.is_cpu());
                let why = err.to_string();
                let reason = why.strip_prefix("--device cuda: ").expect("names the flag");
                assert_eq!(
                    auto.summary,
                    format!("device: CPU (--device auto: {reason})")
                );
            }
        }
        let cpu = select_device(DeviceChoice::Cpu).unwrap();
        assert_eq!(cpu.summary, "device: CPU (--device cpu)");
    }
}
