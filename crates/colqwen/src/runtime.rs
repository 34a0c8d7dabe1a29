//! Device and dtype, decided once (STYLE §6.8): `auto` tries CUDA, then Metal, then the CPU; bf16 on GPUs,
//! f32 on the CPU (candle's CPU bf16 is slow and its softmax inaccurate).

use colqwen_model::{DType, Device};

use crate::error::{Error, Result};

/// Where to run, as the user asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// Best available.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA GPU with this ordinal.
    Cuda(usize),
    /// Apple GPU.
    Metal,
}

/// Compute precision, as the user asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DTypeChoice {
    /// bf16 on GPUs, f32 on the CPU.
    #[default]
    Auto,
    /// float32.
    F32,
    /// bfloat16 (the reference's dtype).
    Bf16,
    /// float16.
    F16,
}

/// The resolved device and dtype.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Device holding weights and activations.
    pub device: Device,
    /// Compute dtype.
    pub dtype: DType,
}

impl Runtime {
    /// Resolves the user's choice; asking for a device this build lacks is an error with the reason.
    pub fn resolve(device: DeviceChoice, dtype: DTypeChoice) -> Result<Self> {
        let unavailable = |requested: &str, e: &dyn std::fmt::Display| Error::DeviceUnavailable {
            requested: requested.into(),
            reason: e.to_string(),
        };
        let device = match device {
            DeviceChoice::Cpu => Device::Cpu,
            DeviceChoice::Cuda(i) => Device::new_cuda(i).map_err(|e| unavailable(&format!("cuda:{i}"), &e))?,
            DeviceChoice::Metal => Device::new_metal(0).map_err(|e| unavailable("metal", &e))?,
            DeviceChoice::Auto => {
                if let Ok(d) = Device::new_cuda(0) {
                    d
                } else if let Ok(d) = Device::new_metal(0) {
                    d
                } else {
                    Device::Cpu
                }
            }
        };
        let dtype = match (dtype, device.is_cpu()) {
            (DTypeChoice::Auto, true) | (DTypeChoice::F32, _) => DType::F32,
            (DTypeChoice::Auto, false) | (DTypeChoice::Bf16, _) => DType::BF16,
            (DTypeChoice::F16, _) => DType::F16,
        };
        Ok(Self { device, dtype })
    }

    /// "cpu", "cuda:0", "metal".
    pub fn device_name(&self) -> String {
        match &self.device {
            Device::Cpu => "cpu".into(),
            Device::Cuda(_) => "cuda".into(),
            Device::Metal(_) => "metal".into(),
        }
    }
}
