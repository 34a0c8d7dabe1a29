//! Opt-in stage timing for benchmarks: when enabled, each named span synchronises the device before and
//! after its work and accumulates wall time, so the per-stage breakdown of a GPU run can be printed. Off by
//! default (no synchronisation, no cost beyond one atomic load).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::Device;

static ENABLED: AtomicBool = AtomicBool::new(false);
static TIMES: Mutex<BTreeMap<&'static str, (Duration, u64)>> = Mutex::new(BTreeMap::new());
/// Least free device memory seen at a span boundary (bytes; `usize::MAX` when none was seen).
static MIN_FREE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);

/// Turns span timing on or off and clears what was accumulated.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
    MIN_FREE.store(usize::MAX, Ordering::SeqCst);
    if let Ok(mut t) = TIMES.lock() {
        t.clear();
    }
}

/// Least free device memory seen at the (synchronised) span boundaries since [`enable`], in bytes: with the
/// total, the peak the forward pass reached at stage granularity. `None` without CUDA.
pub fn min_free_memory() -> Option<usize> {
    Some(MIN_FREE.load(Ordering::SeqCst)).filter(|&m| m != usize::MAX)
}

/// Accumulated `(span, seconds, calls)`, sorted by name.
pub fn report() -> Vec<(&'static str, f64, u64)> {
    TIMES.lock().map(|t| t.iter().map(|(k, (d, n))| (*k, d.as_secs_f64(), *n)).collect()).unwrap_or_default()
}

/// Runs `f`, timing it under `name` when profiling is on.
pub(crate) fn span<T, E>(name: &'static str, device: &Device, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let _ = device.synchronize();
    let t = Instant::now();
    let r = f();
    let _ = device.synchronize();
    if let Some(free) = crate::model::free_device_memory(device) {
        MIN_FREE.fetch_min(free, Ordering::Relaxed);
    }
    if let Ok(mut times) = TIMES.lock() {
        let e = times.entry(name).or_default();
        e.0 += t.elapsed();
        e.1 += 1;
    }
    r
}
