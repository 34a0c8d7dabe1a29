//! Queries about the device the model runs on (free memory, the batch size it affords). A leaf module: the
//! model and the profiler both ask it, neither asks the other.

use candle_core::Device;

/// Device memory not yet allocated, in bytes (`None` on the CPU, on Metal, and in builds without CUDA).
pub fn free_device_memory(device: &Device) -> Option<usize> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        return d.cuda_stream().context().mem_get_info().ok().map(|(free, _)| free);
    }
    let _ = device;
    None
}

/// Pages per forward pass for a device: 4 on the CPU; on CUDA as many as the free memory allows at ≈ 0.25 GiB
/// of activations per 768-token page (the forward pass needs 1.6 GiB over the between-batch level at batch 16,
/// H100), keeping 2 GiB spare, capped at 8: on an H100 throughput is flat from 8 to 32 pages (55.0 / 55.2
/// pages/s at 8 / 16) while the peak grows (10.4 / 11.1 GiB), and a smaller batch starts the GPU sooner end
/// to end (`bench/results.md`).
pub fn default_batch_size(device: &Device) -> usize {
    const PER_PAGE: usize = 256 << 20;
    const SPARE: usize = 2 << 30;
    if device.is_cpu() {
        return 4;
    }
    match free_device_memory(device) {
        Some(free) => (free.saturating_sub(SPARE) / PER_PAGE).clamp(1, 8),
        None => 8,
    }
}
