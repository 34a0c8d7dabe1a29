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
    /// Every visible CUDA GPU (one model replica each).
    CudaAll,
    /// Apple GPU.
    Metal,
}

impl DeviceChoice {
    /// Parses a device list as the command line and the bindings write it: `auto`, `cpu`, `cuda` (every visible
    /// GPU), `cuda:N` or `cuda:N,M,…` (those GPUs), `metal`.
    pub fn parse_list(s: &str) -> std::result::Result<Vec<Self>, String> {
        let bad = || format!("{s:?}: expected auto, cpu, cuda, cuda:N, cuda:N,M,… or metal");
        match s {
            "auto" => Ok(vec![Self::Auto]),
            "cpu" => Ok(vec![Self::Cpu]),
            "metal" => Ok(vec![Self::Metal]),
            "cuda" => Ok(vec![Self::CudaAll]),
            _ => {
                let list = s.strip_prefix("cuda:").ok_or_else(bad)?;
                let ids: Vec<Self> = list
                    .split(',')
                    .map(|n| n.trim().parse::<usize>().map(Self::Cuda).map_err(|_| bad()))
                    .collect::<std::result::Result<_, _>>()?;
                if ids.is_empty() || ids.len() > 64 {
                    return Err(bad());
                }
                Ok(ids)
            }
        }
    }
}

impl DTypeChoice {
    /// Parses `auto`, `f32`, `bf16` or `f16`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            "f16" => Ok(Self::F16),
            _ => Err(format!("{s:?}: expected auto, f32, bf16 or f16")),
        }
    }
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
            DeviceChoice::CudaAll => Device::new_cuda(0).map_err(|e| unavailable("cuda", &e))?,
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

    /// The runtimes of the model replicas: one per device the choices name (`CudaAll` and `Auto` with GPUs:
    /// every visible CUDA GPU), each repeated `per_device` times (several replicas of one device run on their
    /// own threads and CUDA streams; on the CPU they share the cores). Duplicates are kept as given.
    pub fn resolve_all(devices: &[DeviceChoice], dtype: DTypeChoice, per_device: usize) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        for &choice in devices {
            let expanded = match choice {
                DeviceChoice::CudaAll => {
                    let n = cuda_devices();
                    if n == 0 {
                        // The error of the first device says why (no driver, a build without CUDA, …).
                        vec![DeviceChoice::Cuda(0)]
                    } else {
                        (0..n).map(DeviceChoice::Cuda).collect()
                    }
                }
                DeviceChoice::Auto => match cuda_devices() {
                    0 => vec![DeviceChoice::Auto],
                    n => (0..n).map(DeviceChoice::Cuda).collect(),
                },
                other => vec![other],
            };
            for d in expanded {
                // A device value per replica: each gets its own cuBLAS handle (handles are not shared between
                // threads), on the same GPU.
                for _ in 0..per_device.max(1) {
                    out.push(Self::resolve(d, dtype)?);
                }
            }
        }
        if out.is_empty() {
            out.push(Self::resolve(DeviceChoice::Auto, dtype)?);
        }
        Ok(out)
    }

    /// "cpu", "cuda:0", "metal".
    pub fn device_name(&self) -> String {
        match &self.device {
            Device::Cpu => "cpu".into(),
            Device::Cuda(_) => match self.device.location() {
                colqwen_model::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
                _ => "cuda".into(),
            },
            Device::Metal(_) => "metal".into(),
        }
    }
}

/// Visible CUDA GPUs (0 in a build without CUDA or without a driver), found by opening them in turn.
fn cuda_devices() -> usize {
    (0..64).take_while(|&i| Device::new_cuda(i).is_ok()).count()
}
