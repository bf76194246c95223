//! Choosing where tensors live: `--device cpu|cuda:N|auto`.
//!
//! Every tensor path in the library takes a [`candle_core::Device`]; this
//! module only turns the user's words into one, with an error that says what
//! is possible when the request cannot be met (for example `cuda:0` in a
//! binary built without the `cuda` feature).

use anyhow::{bail, Context, Result};
use candle_core::Device;

/// What the user asked for on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The first GPU when the binary has CUDA support and one is present, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => {
                if let Some(n) = s.strip_prefix("cuda:") {
                    let ordinal = n
                        .parse()
                        .with_context(|| format!("bad GPU number in device '{s}'"))?;
                    Ok(Self::Cuda(ordinal))
                } else {
                    bail!("unknown device '{s}': expected cpu, cuda:N or auto")
                }
            }
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceChoice {
    /// Opens the device. `Auto` silently falls back to the CPU.
    pub fn open(&self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(if candle_core::utils::cuda_is_available() {
                Device::new_cuda(0).unwrap_or(Device::Cpu)
            } else {
                Device::Cpu
            }),
            Self::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    bail!(
                        "device cuda:{n} requested, but this stylestream was built without CUDA \
                         support; rebuild with `cargo build --release --features cuda` or use --device cpu"
                    );
                }
                Device::new_cuda(*n).with_context(|| format!("cannot open GPU cuda:{n}"))
            }
        }
    }
}

/// A short human name for a device, for progress lines and logs.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
        Device::Cuda(_) => "cuda".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!(
            "CUDA:1".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(1)
        );
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn cpu_always_opens() {
        assert!(DeviceChoice::Cpu.open().unwrap().is_cpu());
        assert!(DeviceChoice::Auto.open().is_ok());
    }
}
