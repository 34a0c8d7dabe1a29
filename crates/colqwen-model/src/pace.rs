//! Pacing of a page batch's forward pass, so that a query never waits behind a whole batch.
//!
//! A forward pass only enqueues its kernels: without pacing the host runs a whole page batch ahead of the GPU
//! (tens of ms of launches for 100+ ms of work), and a query enqueued on the same device afterwards waits for all
//! of it. With a [`Pace`], the towers call [`Pace::layer_done`] after every layer: on CUDA it records an event
//! and waits until at most [`DEPTH`] layers are still queued on the GPU (enough to keep it busy: one layer of a
//! batch of pages takes milliseconds, its launches a fraction of that), then calls the caller's `between`
//! hook, where the embedding worker runs the queries waiting for this replica. Their kernels then queue behind at
//! most `DEPTH` layers instead of the batch's remainder. On the CPU every op is synchronous already; the hook
//! alone lets queries in between layers.

use candle_core::Device;

use crate::error::Result;

/// Layers of a page batch allowed in the GPU's queue before the host waits.
pub const DEPTH: usize = 2;

/// What a paced forward pass calls between layers (see the module docs).
pub struct Pace<'a> {
    between: Option<&'a mut dyn FnMut()>,
    #[cfg(feature = "cuda")]
    gpu: Option<Gpu>,
}

#[cfg(feature = "cuda")]
struct Gpu {
    stream: std::sync::Arc<candle_core::cuda_backend::cudarc::driver::CudaStream>,
    queued: std::collections::VecDeque<candle_core::cuda_backend::cudarc::driver::CudaEvent>,
}

impl Pace<'static> {
    /// No pacing: the forward pass enqueues freely (queries, tests).
    pub fn none() -> Self {
        Self {
            between: None,
            #[cfg(feature = "cuda")]
            gpu: None,
        }
    }
}

impl<'a> Pace<'a> {
    /// Pacing on `device`, calling `between` after every layer.
    pub fn new(device: &Device, between: &'a mut dyn FnMut()) -> Self {
        #[cfg(feature = "cuda")]
        let gpu = match device {
            Device::Cuda(d) => Some(Gpu { stream: d.cuda_stream(), queued: Default::default() }),
            _ => None,
        };
        #[cfg(not(feature = "cuda"))]
        let _ = device;
        Self {
            between: Some(between),
            #[cfg(feature = "cuda")]
            gpu,
        }
    }

    /// A layer has been enqueued: wait until at most [`DEPTH`] are queued on the GPU, then run the hook.
    pub(crate) fn layer_done(&mut self) -> Result<()> {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = &mut self.gpu {
            use candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags;
            let cuda = |e: candle_core::cuda_backend::cudarc::driver::DriverError| {
                candle_core::Error::Cuda(format!("pacing event: {e}").into())
            };
            // Blocking sync: the host sleeps instead of spinning (the render threads need the cores).
            gpu.queued.push_back(gpu.stream.record_event(Some(CUevent_flags::CU_EVENT_BLOCKING_SYNC)).map_err(cuda)?);
            while gpu.queued.len() > DEPTH {
                if let Some(oldest) = gpu.queued.pop_front() {
                    oldest.synchronize().map_err(cuda)?;
                }
            }
        }
        if let Some(between) = &mut self.between {
            between();
        }
        Ok(())
    }
}
