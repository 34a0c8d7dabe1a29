//! The optimizer: one background thread per open store that keeps the coarse stage ([`crate::coarse`]) up to
//! date, so that writers never wait for it and searches never build it.
//!
//! - Once the index holds [`MIN_PAGES`] pages it trains a codebook on a sample of rows, computes every page's
//!   codes and publishes both at once (under the writer lock, so no page is missed); it retrains when the index
//!   has grown [`RETRAIN_GROWTH`]× since (a codebook of the first manuals fits later ones less well), so the
//!   codebook has seen at least half of the rows.
//! - [`crate::Store::optimize`] (bulk loads, benchmarks) also retrains whenever the codebook was trained on
//!   other rows than the index holds now: its codebook then depends on the pages only, not on when the
//!   background thread happened to run.
//! - After every write it codes the new pages, a batch at a time, checking for shutdown between batches.
//! - It saves `coarse.bin` when it has caught up (at most once a minute while pages keep arriving), so that a
//!   restart does not redo the work; a store dropped mid-way loses only the unsaved codes.
//! - It runs at lower CPU priority (nice 10) on one core; [`crate::Store::optimize`] does the same on all cores
//!   and waits (bulk loads, benchmarks). One round runs at a time, and the background thread gives its round up
//!   (between pages) when `optimize` asks: before, a store reopened on an index whose codebook was due for a
//!   retrain trained and coded every page twice — once by `optimize` on all cores, once more by the background
//!   thread on one core for minutes afterwards, under the searches that followed (at 100k pages, an eighth of
//!   the search phase's CPU time went to it).
//!
//! Two-stage search scores pages without codes exactly, so a page is searchable the moment it is written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use crate::coarse::{Coarse, Codebook, PageCodes};
use crate::error::Result;
use crate::store::{Inner, Slot, Snapshot};

/// Below this many pages the exact scan is fast enough and no coarse stage is built.
pub(crate) const MIN_PAGES: usize = 256;
/// Retrain once the index has this many times the rows the codebook was trained on. Each retrain codes every
/// page again, so the background work over a growing index is at most twice that of coding the final index
/// once; 8 (the first choice) left codebooks trained on an eighth of the pages.
const RETRAIN_GROWTH: usize = 2;
/// Rows sampled for training.
const SAMPLE_ROWS: usize = 65_536;
/// Pages coded between checks for shutdown.
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
            // Gives way to `Store::optimize` (which does all of this round's work and more) and to shutdown.
            let yield_now = || inner.stop.load(Ordering::Relaxed) || inner.foreground.load(Ordering::Relaxed) > 0;
            if yield_now() {
                continue;
            }
            let round = inner.updating.lock().unwrap_or_else(PoisonError::into_inner);
            let result = update(&inner, 1, &yield_now, save, false);
            drop(round);
            match result {
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
/// Retrains first unless the codebook was trained on exactly the rows the index holds.
pub(crate) fn run_once(inner: &Inner, threads: usize) -> Result<usize> {
    inner.foreground.fetch_add(1, Ordering::Relaxed);
    let round = inner.updating.lock().unwrap_or_else(PoisonError::into_inner);
    let result = update(inner, threads, &|| false, true, true);
    drop(round);
    inner.foreground.fetch_sub(1, Ordering::Relaxed);
    Ok(result?.unwrap_or(0))
}

/// One round: train or retrain if due (`full`: unless trained on exactly the index's rows), code the pages
/// without codes, save if asked and caught up. `Ok(None)`: nothing to do (too few pages) or stopped.
fn update(
    inner: &Inner,
    threads: usize,
    stop: &(dyn Fn() -> bool + Sync),
    save: bool,
    full: bool,
) -> Result<Option<usize>> {
    let snap = inner.snapshot();
    if snap.pages.len() < MIN_PAGES {
        return Ok(None);
    }
    let total_rows: usize = snap.pages.iter().map(|s| s.meta.rows).sum();
    let trained_rows = inner.table().trained_rows;
    let mut changed = false;
    let due = total_rows >= RETRAIN_GROWTH * trained_rows.max(1) || (full && total_rows != trained_rows);
    if snap.codebook.is_none() || due {
        let started = Instant::now();
        let book = Arc::new(Codebook::train(&sample(inner, &snap), inner.manifest().embedding_dim));
        let all: Vec<&Arc<Slot>> = snap.pages.iter().collect();
        let Some(codes) = code_pages(inner, &snap, &book, &all, threads, stop) else { return Ok(None) };
        let by_id: HashMap<u64, Arc<PageCodes>> = all.iter().map(|s| s.meta.id).zip(codes).collect();
        let writer = inner.writer();
        {
            let mut table = inner.table_mut();
            table.codebook = Some(book.clone());
            table.trained_rows = total_rows;
            for slot in table.pages.values_mut() {
                let fresh = slot.uncoded();
                if let Some(c) = by_id.get(&slot.meta.id) {
                    let _ = fresh.codes.set(c.clone());
                }
                *slot = Arc::new(fresh);
            }
        }
        inner.publish(&writer)?;
        drop(writer);
        tracing::info!(
            pages = snap.pages.len(),
            centroids = book.len(),
            ms = started.elapsed().as_millis() as u64,
            "trained the coarse stage"
        );
        changed = true;
    }
    // Code what was written since (pages of the snapshot without codes), a batch at a time.
    loop {
        let snap = inner.snapshot();
        let Some(book) = snap.codebook.clone() else { return Ok(None) };
        let missing: Vec<&Arc<Slot>> = snap.pages.iter().filter(|s| s.codes.get().is_none()).collect();
        if missing.is_empty() {
            if save && changed_or_unsaved(changed, inner) {
                let codes = snap.pages.iter().filter_map(|s| Some((s.meta.id, s.codes.get()?.clone()))).collect();
                let coarse = Coarse { codebook: (*book).clone(), trained_rows: inner.table().trained_rows, codes };
                coarse.save(inner.dir())?;
                inner.saved_pages.store(snap.pages.len(), Ordering::Relaxed);
            }
            return Ok(Some(snap.pages.len()));
        }
        for batch in missing.chunks(BATCH_PAGES * threads.max(1)) {
            if stop() {
                return Ok(None);
            }
            let Some(codes) = code_pages(inner, &snap, &book, batch, threads, stop) else { return Ok(None) };
            for (slot, c) in batch.iter().zip(codes) {
                let _ = slot.codes.set(c);
            }
            changed = true;
        }
    }
}

/// Whether `coarse.bin` is behind: something changed in this round, or pages were coded since the last save.
fn changed_or_unsaved(changed: bool, inner: &Inner) -> bool {
    changed || inner.saved_pages.load(Ordering::Relaxed) != inner.snapshot().pages.len()
}

/// About [`SAMPLE_ROWS`] rows spread over the pages (every page contributes at least one; see
/// [`sampled_rows`] for which).
fn sample(inner: &Inner, snap: &Snapshot) -> Vec<f32> {
    let dim = inner.manifest().embedding_dim;
    let per_page = SAMPLE_ROWS.div_ceil(snap.pages.len()).max(1);
    let mut out = Vec::with_capacity(SAMPLE_ROWS.max(snap.pages.len()) * dim);
    for slot in &snap.pages {
        let rows = page_rows(inner, snap, slot);
        for r in sampled_rows(slot.meta.id, slot.meta.rows, per_page) {
            out.extend_from_slice(&rows[r * dim..(r + 1) * dim]);
        }
    }
    out
}

/// Which `per_page` rows of a page of `rows` rows go into the training sample: evenly strided from a phase
/// drawn from the page's id. The phase matters: a page's rows are in the model's order, and its first rows are
/// the prompt's tokens, nearly the same vector on every page — a sample that starts every page at row 0 was,
/// above 65,536 pages (one row a page), nothing but that vector, and the codebook trained on it could not tell
/// pages apart (two-stage recall@10 0.03 at 100k pages; found with the bench's stitched pages, whose rows keep
/// the model's order).
fn sampled_rows(page_id: u64, rows: usize, per_page: usize) -> impl Iterator<Item = usize> {
    let step = (rows / per_page.max(1)).max(1);
    // SplitMix64's finaliser: neighbouring ids get unrelated phases.
    let mut z = page_id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let phase = (z ^ (z >> 31)) as usize % step;
    (phase..rows).step_by(step).take(per_page)
}

/// A page's rows, row-major f32.
fn page_rows(inner: &Inner, snap: &Snapshot, slot: &Slot) -> Vec<f32> {
    let map = snap.map.as_ref().expect("a published snapshot has a map");
    crate::store::stored_rows(inner.manifest().storage, map, slot, inner.manifest().embedding_dim)
}

/// Codes of `pages` on `threads` threads, in order; `None` if stopped.
fn code_pages(
    inner: &Inner,
    snap: &Snapshot,
    book: &Codebook,
    pages: &[&Arc<Slot>],
    threads: usize,
    stop: &(dyn Fn() -> bool + Sync),
) -> Option<Vec<Arc<PageCodes>>> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        loop {
            if stop() {
                return None;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= pages.len() {
                return Some(out);
            }
            let rows = page_rows(inner, snap, pages[i]);
            out.push((i, book.codes(&rows, &mut scratch)));
        }
    };
    let threads = threads.clamp(1, pages.len().max(1));
    let parts: Vec<Option<Vec<(usize, Arc<PageCodes>)>>> = if threads == 1 {
        vec![work()]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
            handles.into_iter().map(|h| h.join().unwrap_or(None)).collect()
        })
    };
    let mut all: Vec<Option<Arc<PageCodes>>> = vec![None; pages.len()];
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

#[cfg(test)]
mod tests {
    use super::sampled_rows;

    #[test]
    fn the_training_sample_does_not_always_start_at_row_zero() {
        // One row a page (an index of more than 65,536 pages): positions spread over the page, row 0 rare.
        let picks: Vec<usize> = (0..10_000u64).flat_map(|id| sampled_rows(id, 748, 1)).collect();
        assert_eq!(picks.len(), 10_000);
        assert!(picks.iter().filter(|&&r| r == 0).count() < 100, "row 0 is over-sampled");
        let distinct: std::collections::HashSet<_> = picks.iter().collect();
        assert!(distinct.len() > 700, "only {} positions", distinct.len());
        // Several rows a page: evenly strided, in range, as many as asked (or the page's rows).
        for id in 0..100 {
            let rows: Vec<usize> = sampled_rows(id, 748, 4).collect();
            assert_eq!(rows.len(), 4);
            assert!(rows.windows(2).all(|w| w[1] - w[0] == 187) && rows[3] < 748, "{rows:?}");
        }
        assert_eq!(sampled_rows(7, 3, 10).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(sampled_rows(7, 0, 1).count(), 0);
    }
}
