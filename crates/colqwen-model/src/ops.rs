//! The fast path of a device, chosen once at load ([`Ops::for_device`]) and handed to the layers, which
//! dispatch on this value (`match ops { Ops::CudaBf16(..) => fused kernel, .. => candle's ops }`) instead of
//! testing devices and dtypes while they run. Shape limits of the fused kernels (compiled head dims, norm
//! widths, multiples of 8) are still checked per call, next to the kernels (`kernels.rs`).

use candle_core::{DType, Device, Result};

use crate::model::TextWeights;

/// Which implementation of the model's ops a loaded model runs.
#[derive(Clone)]
pub(crate) enum Ops {
    /// candle's own ops, as the reference orders them: the CPU, Metal, and every dtype there.
    Generic,
    /// The CPU's f32 model with 8-bit projections (`--dtype q8`, only ever the language model's ops: see
    /// [`Ops::for_text`]): [`Ops::Generic`], except that a projection whose input width is a multiple of 32 holds
    /// its weight in Q8_0 and quantizes its activations to 8 bits (`crate::quant`).
    CpuQ8,
    /// CUDA in f32 or f16: candle's ops, with the two choices that pay on a GPU in any dtype: candle's fused
    /// RMSNorm kernel (instead of nine memory-bound passes; in half precision at most one ulp from the
    /// reference's double rounding) and the gated MLP's width padded to a multiple of 128 (see
    /// `GatedMlp::new`).
    #[cfg(feature = "cuda")]
    Cuda,
    /// CUDA in bf16: everything [`Ops::Cuda`] does, plus the fused kernels of `kernels/colqwen.cu` (flash
    /// attention, rotary, SiLU·up, residual add + RMSNorm), biased projections through cuBLASLt with the bias
    /// in the GEMM epilogue, and pixel uploads through a page-locked buffer.
    #[cfg(feature = "cuda")]
    CudaBf16(std::sync::Arc<CudaBf16>),
}

impl Ops {
    /// The ops for weights and activations in `dtype` on `device`: the one place where the device fast path is
    /// chosen.
    pub(crate) fn for_device(device: &Device, dtype: DType) -> Result<Self> {
        match (device, dtype) {
            #[cfg(feature = "cuda")]
            (Device::Cuda(dev), DType::BF16) => Ok(Self::CudaBf16(std::sync::Arc::new(CudaBf16::new(dev)?))),
            #[cfg(feature = "cuda")]
            (Device::Cuda(_), _) => Ok(Self::Cuda),
            _ => Ok(Self::Generic),
        }
    }

    /// The language model's ops: these ops, or with [`TextWeights::Q8`] the 8-bit projections of
    /// [`Ops::CpuQ8`], which exist only for the CPU's f32 model (a GPU runs bf16 GEMMs faster than any 8-bit
    /// path candle offers there, and the kernels are x86 CPU kernels).
    pub(crate) fn for_text(&self, weights: TextWeights, device: &Device, dtype: DType) -> crate::Result<Self> {
        match weights {
            TextWeights::Dense => Ok(self.clone()),
            TextWeights::Q8 if device.is_cpu() && dtype == DType::F32 => Ok(Self::CpuQ8),
            TextWeights::Q8 => Err(crate::Error::Unsupported {
                what: format!("8-bit weights on {device:?} in {dtype:?}"),
                hint: "8-bit weights are for the CPU: pass --device cpu with --dtype q8, or leave --dtype out on a GPU",
            }),
        }
    }

    /// Short name for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::CpuQ8 => "cpu-q8",
            #[cfg(feature = "cuda")]
            Self::Cuda => "cuda",
            #[cfg(feature = "cuda")]
            Self::CudaBf16(_) => "cuda-bf16 (fused kernels)",
        }
    }

    /// The head width attention runs at for heads of `d` dims: `d`, or on CUDA in bf16 the next width with a
    /// compiled flash kernel when `d` has none (the heads are then zero-padded, `nn::pad_head_halves`).
    pub(crate) fn kernel_head_dim(&self, d: usize) -> usize {
        match self {
            #[cfg(feature = "cuda")]
            Self::CudaBf16(_) if !crate::kernels::flash_fits(d) && d.is_multiple_of(2) => {
                crate::kernels::FLASH_HEAD_DIMS.iter().copied().find(|&p| p > d).unwrap_or(d)
            }
            _ => d,
        }
    }

    /// Query batches are padded to a multiple of this many rows (a dummy sequence at the end, dropped after):
    /// on CUDA, queries of nearby lengths then share GEMM shapes, so cuBLAS's per-shape choices and the first
    /// launch of each shape are paid once per bucket at warm-up, not by the first user query of every new length.
    /// On the CPU the padding would only add work.
    pub(crate) fn query_rows_multiple(&self) -> usize {
        match self {
            Self::Generic | Self::CpuQ8 => 1,
            #[cfg(feature = "cuda")]
            Self::Cuda | Self::CudaBf16(_) => 16,
        }
    }

    /// Whether the gated MLP's intermediate width is padded to a multiple of 128 with zero weights, so that
    /// cuBLAS runs its aligned GEMM kernels (2.5× faster for the vision tower's 3420 → 3456 on an H100). On the
    /// CPU the padding would only add work.
    pub(crate) fn pads_gemm_widths(&self) -> bool {
        match self {
            Self::Generic | Self::CpuQ8 => false,
            #[cfg(feature = "cuda")]
            Self::Cuda | Self::CudaBf16(_) => true,
        }
    }
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the bf16 CUDA path keeps for the model's lifetime.
#[cfg(feature = "cuda")]
pub(crate) struct CudaBf16 {
    device: candle_core::CudaDevice,
    /// One cuBLASLt handle (it holds a 32 MiB workspace) shared by every biased projection of the model.
    pub(crate) lt: std::sync::Arc<candle_core::cuda_backend::cudarc::cublaslt::CudaBlasLT>,
    /// Reused page-locked buffer for pixel uploads, grown on demand.
    staging: std::sync::Mutex<Option<crate::kernels::Staging>>,
}

#[cfg(feature = "cuda")]
impl CudaBf16 {
    fn new(device: &candle_core::CudaDevice) -> Result<Self> {
        Ok(Self {
            device: device.clone(),
            lt: std::sync::Arc::new(crate::kernels::blas_lt(device)?),
            staging: Default::default(),
        })
    }

    /// Uploads a `shape` bf16 matrix that `fill` writes, converted straight into the page-locked buffer and
    /// copied by one DMA transfer (a pageable upload of a 16-page batch took longer than a sixth of its forward
    /// pass on an H100).
    pub(crate) fn upload(
        &self,
        shape: (usize, usize),
        fill: impl FnOnce(&mut [half::bf16]),
    ) -> Result<candle_core::Tensor> {
        let mut staging = self.staging.lock().map_err(|_| candle_core::Error::Msg("staging buffer poisoned".into()))?;
        crate::kernels::upload_pinned(&self.device, &mut staging, shape, fill)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_runs_the_generic_ops_in_every_dtype() {
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let ops = Ops::for_device(&Device::Cpu, dtype).unwrap();
            assert!(matches!(ops, Ops::Generic), "{dtype:?}: {ops:?}");
            assert!(!ops.pads_gemm_widths());
        }
    }

    #[test]
    fn eight_bit_weights_are_the_cpu_f32_text_tower_only() {
        let ops = Ops::for_device(&Device::Cpu, DType::F32).unwrap();
        assert!(matches!(ops.for_text(TextWeights::Dense, &Device::Cpu, DType::F32).unwrap(), Ops::Generic));
        assert!(matches!(ops.for_text(TextWeights::Q8, &Device::Cpu, DType::F32).unwrap(), Ops::CpuQ8));
        let err = ops.for_text(TextWeights::Q8, &Device::Cpu, DType::BF16).unwrap_err();
        assert!(matches!(err, crate::Error::Unsupported { .. }), "{err}");
    }
}
