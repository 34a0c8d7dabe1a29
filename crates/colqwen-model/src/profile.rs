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

/// Turns span timing on or off and clears what was accumulated.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
    if let Ok(mut t) = TIMES.lock() {
        t.clear();
    }
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
    if let Ok(mut times) = TIMES.lock() {
        let e = times.entry(name).or_default();
        e.0 += t.elapsed();
        e.1 += 1;
    }
    r
}
