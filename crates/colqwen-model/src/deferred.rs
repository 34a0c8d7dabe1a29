//! A part of the model built on first use: the vision tower of a model loaded for queries (8-bit text weights on
//! the CPU, `colqwen serve --dtype q8`), which a search never runs. Building it at load widened 2.7 GB of bf16
//! weights to f32 for the 3B model (≈ 40 % of that start-up's page faults, `bench/results.md` 2026-12-08).

use std::sync::{Mutex, OnceLock};

use crate::error::Result;

type Build<T> = Box<dyn Fn() -> Result<T> + Send + Sync>;

pub(crate) struct Deferred<T> {
    value: OnceLock<T>,
    /// How to build it; taken once built. A failed build stays here, so the next use tries again (and fails
    /// again, with the same error, for a checkpoint that lacks a weight).
    build: Mutex<Option<Build<T>>>,
}

impl<T> Deferred<T> {
    /// What `build` makes: built now, or with `defer` on the first [`Deferred::get`] (errors of a build now are
    /// returned here, as any other load error).
    pub(crate) fn new(defer: bool, build: impl Fn() -> Result<T> + Send + Sync + 'static) -> Result<Self> {
        Ok(if defer {
            Self { value: OnceLock::new(), build: Mutex::new(Some(Box::new(build))) }
        } else {
            Self { value: OnceLock::from(build()?), build: Mutex::new(None) }
        })
    }

    /// The value, built now when this is its first use (one build however many threads ask at once).
    pub(crate) fn get(&self) -> Result<&T> {
        if let Some(v) = self.value.get() {
            return Ok(v);
        }
        let mut build = self
            .build
            .lock()
            .map_err(|_| candle_core::Error::Msg("a model part's build panicked in another thread".into()))?;
        if let Some(v) = self.value.get() {
            return Ok(v);
        }
        let Some(f) = build.as_ref() else {
            return Err(candle_core::Error::Msg("a deferred model part has no way to be built".into()).into());
        };
        let value = f()?;
        *build = None;
        Ok(self.value.get_or_init(|| value))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn built_once_on_first_use_and_retried_after_a_failure() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let d = Deferred::new(true, move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            if n == 0 { Err(candle_core::Error::Msg("missing weight".into()).into()) } else { Ok(n) }
        })
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing built before use");
        assert!(d.get().is_err());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| assert_eq!(*d.get().unwrap(), 1));
            }
        });
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one failed build, then one build for every thread");
        assert_eq!(*Deferred::new(false, || Ok(7)).unwrap().get().unwrap(), 7);
    }
}
