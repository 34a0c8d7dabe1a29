//! The optimizer: one background thread per open store that keeps the coarse stage ([`crate::coarse`]) up to
//! date, so that writers never wait for it and searches never build it.
//!
//! - After every write it pools the new pages, a batch at a time, checking for shutdown between batches (pooling
//!   needs nothing global: no codebook to train).
//! - It saves `coarse.bin` when it has caught up (at most once a minute while pages keep arriving), so that a
//!   restart does not redo the work; a store dropped mid-way loses only the unsaved codes.
//! - It runs at lower CPU priority (nice 10) on one core; [`crate::Store::optimize`] does the same on all cores
//!   and waits (bulk loads, benchmarks).
//!
//! Two-stage search scores pages without codes exactly, so a page is searchable the moment it is written.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use half::f16;

use crate::coarse::Coarse;
use crate::error::Result;
use crate::kernel::layout;
use crate::search;
use crate::store::{Inner, Slot, Snapshot};
use colqwen_core::VectorStorage;

/// Pages pooled between checks for shutdown.
const BATCH_PAGES: usize = 32;
/// Writes arrive in bursts; wait this long after one before working.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// While pages keep arriving, save `coarse.bin` at most this often.
const SAVE_EVERY: Duration = Duration::from_secs(60);

pub(crate) fn spawn(inner: Arc<Inner>) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new().name("colqwen-optimize".into()).spawn(move || {
        lower_priority();
        let mut last_save: Option<Instant> = None;
        loop {
            {
                let (lock, cvar) = &inner.dirty;
                let mut dirty = lock.lock().unwrap_or_else(PoisonError::into_inner);
                while !*dirty && !inner.stop.load(Ordering::Relaxed) {
                    dirty = cvar.wait(dirty).unwrap_or_else(PoisonError::into_inner);
                }
                *dirty = false;
                if inner.stop.load(Ordering::Relaxed) {
                    return;
                }
                // Debounce: let a burst of writes finish (a wake during the wait is kept for the next round).
                let (guard, _) = cvar.wait_timeout(dirty, DEBOUNCE).unwrap_or_else(PoisonError::into_inner);
                drop(guard);
            }
            if inner.stop.load(Ordering::Relaxed) {
                return;
            }
            let save = last_save.is_none_or(|t| t.elapsed() >= SAVE_EVERY);
            match update(&inner, 1, &inner.stop, save) {
                Ok(Some(_)) if save => last_save = Some(Instant::now()),
                Ok(_) => {}
                Err(e) => tracing::warn!(dir = %inner.dir().display(), error = %e, "updating the coarse stage failed"),
            }
        }
    });
    match spawned {
        Ok(handle) => Some(handle),
        Err(e) => {
            // Without the thread two-stage search is exact (slower), never wrong.
            tracing::warn!(error = %e, "cannot start the optimizer thread; searches stay exact");
            None
        }
    }
}

/// Brings the coarse stage up to date with `threads` threads and saves it; returns the pages it covers.
pub(crate) fn run_once(inner: &Inner, threads: usize, stop: &AtomicBool) -> Result<usize> {
    Ok(update(inner, threads, stop, true)?.unwrap_or(0))
}

/// One round: pool the pages of the snapshot that are not pooled yet, save if asked and caught up.
/// `Ok(None)`: stopped.
fn update(inner: &Inner, threads: usize, stop: &AtomicBool, save: bool) -> Result<Option<usize>> {
    let mut changed = false;
    loop {
        let snap = inner.snapshot();
        let missing: Vec<&Arc<Slot>> = snap.pages.iter().filter(|s| s.pooled.get().is_none()).collect();
        if missing.is_empty() {
            if save && (changed || inner.saved_pages.load(Ordering::Relaxed) != snap.pages.len()) {
                let pooled = snap.pages.iter().filter_map(|s| Some((s.meta.id, s.pooled.get()?.clone()))).collect();
                Coarse { dim: inner.manifest().embedding_dim, pooled }.save(inner.dir())?;
                inner.saved_pages.store(snap.pages.len(), Ordering::Relaxed);
            }
            return Ok(Some(snap.pages.len()));
        }
        for batch in missing.chunks(BATCH_PAGES * threads.max(1)) {
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let Some(pooled) = pool_pages(inner, &snap, batch, threads, stop) else { return Ok(None) };
            for (slot, p) in batch.iter().zip(pooled) {
                let _ = slot.pooled.set(p);
            }
            changed = true;
        }
    }
}

/// A page's rows, row-major f32.
fn page_rows(inner: &Inner, snap: &Snapshot, slot: &Slot) -> Vec<f32> {
    let map = snap.map.as_ref().expect("a published snapshot has a map");
    let dim = inner.manifest().embedding_dim;
    match inner.manifest().storage {
        VectorStorage::F32 => layout::decode(search::elements::<f32>(map, slot), slot.meta.rows, dim),
        VectorStorage::F16 => layout::decode(search::elements::<f16>(map, slot), slot.meta.rows, dim),
    }
}

/// Pooled vectors of `pages` on `threads` threads, in order; `None` if stopped.
fn pool_pages(
    inner: &Inner,
    snap: &Snapshot,
    pages: &[&Arc<Slot>],
    threads: usize,
    stop: &AtomicBool,
) -> Option<Vec<Arc<[f32]>>> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut out = Vec::new();
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= pages.len() {
                return Some(out);
            }
            let rows = page_rows(inner, snap, pages[i]);
            out.push((i, Arc::<[f32]>::from(crate::coarse::pool(&rows, inner.manifest().embedding_dim))));
        }
    };
    let threads = threads.clamp(1, pages.len().max(1));
    let parts: Vec<Option<Vec<(usize, Arc<[f32]>)>>> = if threads == 1 {
        vec![work()]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
            handles.into_iter().map(|h| h.join().unwrap_or(None)).collect()
        })
    };
    let mut all: Vec<Option<Arc<[f32]>>> = vec![None; pages.len()];
    for part in parts {
        for (i, c) in part? {
            all[i] = Some(c);
        }
    }
    all.into_iter().collect()
}

fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority on the calling thread; failure only leaves the priority unchanged.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}
