//! Stage timing for benchmarks, a `tracing` span per stage, and taps on the intermediate tensors for the
//! stage-by-stage parity tests ([`Taps`]).
//!
//! Each layer holds the `Stage`s it runs (made at load with the `stage!` macro): a name, a TRACE span, and
//! the model's profiling slot. A stage always enters its span, which costs next to nothing unless a
//! subscriber records TRACE spans (then the stages show up in its output, e.g. a Chrome trace). Only while a
//! [`Profiler`] is set on the model ([`crate::ColQwen::set_profiling`]) does a stage also synchronise the
//! device before and after its work (GPU work is asynchronous: without the synchronisation the time would be
//! the launch time, not the work) and add the wall time to that profiler. Without a profiler: no
//! synchronisation, one atomic load per stage.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use candle_core::Device;

use crate::device::free_device_memory;

/// Wall time per stage of the forward passes run while it was set on a model
/// ([`crate::ColQwen::set_profiling`]), and the least free device memory seen at a stage boundary.
///
/// Stages run with the device synchronised around them, so a profiled pass is slower than a plain one; the
/// times of passes run concurrently on one model interleave.
#[derive(Debug)]
pub struct Profiler {
    times: Mutex<BTreeMap<&'static str, (Duration, u64)>>,
    /// Least free device memory seen after a stage, in bytes (`usize::MAX` while none was seen).
    min_free: AtomicUsize,
}

impl Default for Profiler {
    fn default() -> Self {
        Self { times: Mutex::default(), min_free: AtomicUsize::new(usize::MAX) }
    }
}

impl Profiler {
    /// An empty profiler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accumulated `(stage, seconds, calls)`, sorted by stage name.
    pub fn report(&self) -> Vec<(&'static str, f64, u64)> {
        self.times.lock().map(|t| t.iter().map(|(k, (d, n))| (*k, d.as_secs_f64(), *n)).collect()).unwrap_or_default()
    }

    /// Least free device memory seen at the (synchronised) stage boundaries, in bytes: with the total, the
    /// peak the forward pass reached at stage granularity. `None` without CUDA, or before any stage ran.
    pub fn min_free_memory(&self) -> Option<usize> {
        Some(self.min_free.load(Ordering::Relaxed)).filter(|&m| m != usize::MAX)
    }

    fn record(&self, stage: &'static str, elapsed: Duration, free_bytes: Option<usize>) {
        if let Some(free) = free_bytes {
            self.min_free.fetch_min(free, Ordering::Relaxed);
        }
        if let Ok(mut times) = self.times.lock() {
            let e = times.entry(stage).or_default();
            e.0 += elapsed;
            e.1 += 1;
        }
    }
}

/// The intermediate tensors of the forward passes run while it was set on a model
/// ([`crate::ColQwen::set_taps`]), by name (`vision.block0`, `text.layer.3`, …; names are listed where they are
/// recorded), in the order recorded. For tests: with taps set, every named stage keeps its output alive.
#[derive(Debug, Default)]
pub struct Taps {
    tensors: Mutex<Vec<(String, candle_core::Tensor)>>,
}

impl Taps {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything recorded so far, emptying the recorder.
    pub fn take(&self) -> Vec<(String, candle_core::Tensor)> {
        self.tensors.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default()
    }

    fn record(&self, name: String, tensor: &candle_core::Tensor) {
        if let Ok(mut t) = self.tensors.lock() {
            t.push((name, tensor.clone()));
        }
    }
}

/// The profiling slot of one loaded model, shared by all its stages: the profiler they report to (if any),
/// the device they synchronise, and the taps they record to (if any).
#[derive(Clone, Debug)]
pub(crate) struct Profiling(Arc<Slot>);

#[derive(Debug)]
struct Slot {
    device: Device,
    /// Whether `profiler` is set: the one load a stage makes when profiling is off.
    on: AtomicBool,
    profiler: RwLock<Option<Arc<Profiler>>>,
    /// Whether `taps` is set: the one load a tap makes when no test listens.
    tapping: AtomicBool,
    taps: RwLock<Option<Arc<Taps>>>,
}

impl Profiling {
    /// A slot for a model on `device`, with no profiler set.
    pub(crate) fn new(device: &Device) -> Self {
        Self(Arc::new(Slot {
            device: device.clone(),
            on: AtomicBool::new(false),
            profiler: RwLock::default(),
            tapping: AtomicBool::new(false),
            taps: RwLock::default(),
        }))
    }

    /// Sets (or, with `None`, clears) the profiler the stages report to.
    pub(crate) fn set(&self, profiler: Option<Arc<Profiler>>) {
        if let Ok(mut slot) = self.0.profiler.write() {
            self.0.on.store(profiler.is_some(), Ordering::Release);
            *slot = profiler;
        }
    }

    /// Sets (or, with `None`, clears) the taps the layers record to.
    pub(crate) fn set_taps(&self, taps: Option<Arc<Taps>>) {
        if let Ok(mut slot) = self.0.taps.write() {
            self.0.tapping.store(taps.is_some(), Ordering::Release);
            *slot = taps;
        }
    }

    /// Whether taps are set (to skip work whose only use is a tap).
    pub(crate) fn tapping(&self) -> bool {
        self.0.tapping.load(Ordering::Acquire)
    }

    /// Records `tensor` as `name()` while taps are set (the name is only built then).
    pub(crate) fn tap(&self, name: impl FnOnce() -> String, tensor: &candle_core::Tensor) {
        if !self.0.tapping.load(Ordering::Acquire) {
            return;
        }
        if let Some(taps) = self.0.taps.read().ok().and_then(|t| t.clone()) {
            taps.record(name(), tensor);
        }
    }

    fn current(&self) -> Option<Arc<Profiler>> {
        if !self.0.on.load(Ordering::Acquire) {
            return None;
        }
        self.0.profiler.read().ok().and_then(|p| p.clone())
    }

    /// A stage named `name` with its tracing span (use [`stage!`], which makes the span).
    pub(crate) fn stage(&self, name: &'static str, span: tracing::Span) -> Stage {
        Stage { name, span, profiling: self.clone() }
    }
}

/// A named stage of a layer's forward pass (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct Stage {
    name: &'static str,
    span: tracing::Span,
    profiling: Profiling,
}

impl Stage {
    /// Runs `f` inside the stage's span; timed (device synchronised around it) while a profiler is set.
    pub(crate) fn run<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let _entered = self.span.enter();
        let Some(profiler) = self.profiling.current() else {
            return f();
        };
        let device = &self.profiling.0.device;
        let _ = device.synchronize();
        let start = Instant::now();
        let out = f();
        let _ = device.synchronize();
        profiler.record(self.name, start.elapsed(), free_device_memory(device));
        out
    }
}

/// `stage!(profiling, "vision.qkv")`: a [`Stage`] of that name reporting to `profiling`, with a TRACE span of
/// the same name (a span name must be a literal, hence the macro).
macro_rules! stage {
    ($profiling:expr, $name:literal) => {
        $profiling.stage($name, tracing::trace_span!($name))
    };
}
pub(crate) use stage;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_report_only_while_a_profiler_is_set() {
        let profiling = Profiling::new(&Device::Cpu);
        let (a, b) = (stage!(profiling, "a"), stage!(profiling, "b"));
        assert_eq!(a.run(|| Ok::<_, ()>(1)), Ok(1), "runs without a profiler");
        let profiler = Arc::new(Profiler::new());
        profiling.set(Some(profiler.clone()));
        a.run(|| Ok::<_, ()>(())).unwrap();
        a.run(|| Ok::<_, ()>(())).unwrap();
        assert_eq!(b.run(|| Err::<(), _>("failed")), Err("failed"), "errors pass through");
        profiling.set(None);
        a.run(|| Ok::<_, ()>(())).unwrap();
        let calls: Vec<(&str, u64)> = profiler.report().iter().map(|&(name, _, n)| (name, n)).collect();
        assert_eq!(calls, [("a", 2), ("b", 1)]);
        assert_eq!(profiler.min_free_memory(), None, "no device memory to query on the CPU");
    }
}
