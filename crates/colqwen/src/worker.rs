//! The embedding workers: one thread per model replica (one replica per GPU, or several on one device), each
//! owning every call into its replica, all fed by one queue with two lanes. Queries go ahead of page batches, so
//! a search waits at most for a page batch that is already on a device; waiting queries are embedded together in
//! one forward pass by whichever replica is free first (the least busy). With two or more replicas the pool can
//! keep one free of page batches for queries ([`PoolOptions::reserve_for_queries`], used by the server).
//!
//! A replica busy with a page batch still answers queries: between the layers of the batch's forward pass
//! (`PageEmbedder::embed_pages_paced`, which keeps at most a couple of layers queued on the GPU) it embeds the
//! queries waiting at that moment, so a search waits for about one layer of a batch, not for the whole batch,
//! even when the only replica is ingesting.
//!
//! A page batch that fails on one replica (out of memory, a lost device, a panic) is retried on a replica that
//! has not tried it; only when every replica has failed it does the error reach the caller.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use colqwen_core::{MultiVector, PageEmbedder, PageInput};

use crate::error::{Error, Result};

/// Queries embedded together at most (one forward pass of the text tower).
const MAX_QUERY_BATCH: usize = 32;

type Reply<T> = Sender<std::result::Result<T, String>>;

struct QueryJob {
    text: String,
    reply: Reply<MultiVector>,
}

struct PageJob {
    inputs: Vec<PageInput>,
    reply: Reply<Vec<MultiVector>>,
    /// Replicas that failed this batch, and their errors.
    failed: Vec<(usize, String)>,
}

/// How the pool schedules.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolOptions {
    /// With two or more replicas, never let page batches occupy all of them: one stays free for queries.
    pub reserve_for_queries: bool,
}

#[derive(Default)]
struct Lanes {
    queries: VecDeque<QueryJob>,
    pages: VecDeque<PageJob>,
    /// Replicas busy with a page batch now.
    on_pages: usize,
    stopping: bool,
}

impl Lanes {
    /// The oldest waiting queries, up to one forward pass's worth ([`MAX_QUERY_BATCH`]).
    fn take_queries(&mut self) -> Vec<QueryJob> {
        let n = self.queries.len().min(MAX_QUERY_BATCH);
        self.queries.drain(..n).collect()
    }
}

struct Shared {
    lanes: Mutex<Lanes>,
    wake: Condvar,
    replicas: Vec<Arc<dyn PageEmbedder>>,
    /// Replicas that may work on page batches at once.
    page_slots: usize,
}

impl Shared {
    fn lanes(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The pool of workers; dropping it stops the threads after the jobs in hand.
pub struct EmbedWorker {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl EmbedWorker {
    /// Starts one worker thread for `embedder`.
    pub fn start(embedder: Arc<dyn PageEmbedder>) -> Self {
        Self::start_pool(vec![embedder], PoolOptions::default())
    }

    /// Starts one worker thread per replica. Replicas must be the same model (same identity), each on its own
    /// device or stream; the first one answers [`EmbedWorker::embedder`].
    ///
    /// # Panics
    /// If `replicas` is empty.
    pub fn start_pool(replicas: Vec<Arc<dyn PageEmbedder>>, opts: PoolOptions) -> Self {
        assert!(!replicas.is_empty(), "a pool needs at least one replica");
        let n = replicas.len();
        let page_slots = if opts.reserve_for_queries && n >= 2 { n - 1 } else { n };
        let shared = Arc::new(Shared { lanes: Mutex::default(), wake: Condvar::new(), replicas, page_slots });
        let threads = (0..n)
            .filter_map(|i| {
                let worker = shared.clone();
                std::thread::Builder::new()
                    .name(format!("colqwen-embed-{i}"))
                    .spawn(move || run(&worker, i))
                    .map_err(|e| tracing::error!("cannot start embedding worker {i}: {e}"))
                    .ok()
            })
            .collect();
        Self { shared, threads }
    }

    /// The model behind the worker (for its identity and for page preparation, which runs on other threads).
    pub fn embedder(&self) -> &Arc<dyn PageEmbedder> {
        &self.shared.replicas[0]
    }

    /// Model replicas (the number of page batches worth having in flight).
    pub fn replicas(&self) -> usize {
        self.shared.replicas.len()
    }

    /// Embeds one query, ahead of any waiting page batch.
    pub fn embed_query(&self, text: &str) -> Result<MultiVector> {
        let mut all = self.embed_queries(&[text])?;
        all.pop().ok_or(Error::WorkerStopped)
    }

    /// Embeds queries, ahead of any waiting page batch.
    pub fn embed_queries(&self, texts: &[&str]) -> Result<Vec<MultiVector>> {
        let (tx, rx) = channel();
        {
            let mut lanes = self.shared.lanes();
            if lanes.stopping || self.threads.is_empty() {
                return Err(Error::WorkerStopped);
            }
            for t in texts {
                lanes.queries.push_back(QueryJob { text: (*t).to_owned(), reply: tx.clone() });
            }
        }
        self.shared.wake.notify_all();
        drop(tx);
        (0..texts.len()).map(|_| answer(rx.recv())).collect()
    }

    /// Embeds a batch of prepared pages (after every waiting query).
    pub fn embed_pages(&self, inputs: Vec<PageInput>) -> Result<Vec<MultiVector>> {
        let n = inputs.len();
        let (tx, rx) = channel();
        {
            let mut lanes = self.shared.lanes();
            if lanes.stopping || self.threads.is_empty() {
                return Err(Error::WorkerStopped);
            }
            lanes.pages.push_back(PageJob { inputs, reply: tx, failed: Vec::new() });
        }
        self.shared.wake.notify_all();
        answer(rx.recv()).map_err(|e| match e {
            Error::Embed(reason) => Error::EmbedBatch { pages: n, reason: reason.to_string() },
            other => other,
        })
    }

    /// Waiting (queries, page batches).
    pub fn queue_depths(&self) -> (usize, usize) {
        let lanes = self.shared.lanes();
        (lanes.queries.len(), lanes.pages.len())
    }
}

impl Drop for EmbedWorker {
    fn drop(&mut self) {
        self.shared.lanes().stopping = true;
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn answer<T>(r: std::result::Result<std::result::Result<T, String>, std::sync::mpsc::RecvError>) -> Result<T> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(reason)) => Err(Error::Embed(reason.into())),
        Err(_) => Err(Error::WorkerStopped),
    }
}

enum Work {
    Queries(Vec<QueryJob>),
    Pages(PageJob),
}

fn run(shared: &Shared, me: usize) {
    let embedder = &shared.replicas[me];
    loop {
        let work = {
            let mut lanes = shared.lanes();
            loop {
                if !lanes.queries.is_empty() {
                    break Work::Queries(lanes.take_queries());
                }
                if lanes.on_pages < shared.page_slots
                    && let Some(pos) = lanes.pages.iter().position(|j| !j.failed.iter().any(|(r, _)| *r == me))
                {
                    let job = lanes.pages.remove(pos).expect("position is in range");
                    lanes.on_pages += 1;
                    break Work::Pages(job);
                }
                if lanes.stopping {
                    return;
                }
                lanes = shared.wake.wait(lanes).unwrap_or_else(PoisonError::into_inner);
            }
        };
        match work {
            Work::Queries(jobs) => embed_queries(embedder.as_ref(), jobs),
            Work::Pages(mut job) => {
                let n = job.inputs.len();
                // Between the batch's layers: the queries waiting now, on this replica (see the module docs).
                let mut between = || {
                    let jobs = shared.lanes().take_queries();
                    if !jobs.is_empty() {
                        embed_queries(embedder.as_ref(), jobs);
                    }
                };
                // The inputs stay with the job for a retry elsewhere: the replica gets a copy of the handles.
                let result = contained(|| embedder.embed_pages_paced(job.inputs.clone(), &mut between)).and_then(|v| {
                    if v.len() == n {
                        Ok(v)
                    } else {
                        Err("the model returned the wrong number of page embeddings".into())
                    }
                });
                let mut lanes = shared.lanes();
                lanes.on_pages -= 1;
                match result {
                    Ok(v) => {
                        let _ = job.reply.send(Ok(v));
                    }
                    Err(reason) => {
                        job.failed.push((me, reason));
                        if job.failed.len() < shared.replicas.len() && !lanes.stopping {
                            tracing::warn!(
                                replica = me,
                                device = %embedder.device_name(),
                                error = %job.failed.last().map_or("", |(_, r)| r.as_str()),
                                "a page batch failed; retrying it on another replica"
                            );
                            lanes.pages.push_front(job);
                        } else {
                            let reasons: Vec<&str> = job.failed.iter().map(|(_, r)| r.as_str()).collect();
                            let _ = job.reply.send(Err(reasons.join("; then on another replica: ")));
                        }
                    }
                }
                drop(lanes);
                shared.wake.notify_all();
            }
        }
    }
}

/// Embeds `jobs` in one forward pass and answers each.
fn embed_queries(embedder: &dyn PageEmbedder, jobs: Vec<QueryJob>) {
    let texts: Vec<&str> = jobs.iter().map(|j| j.text.as_str()).collect();
    match contained(|| embedder.embed_queries(&texts)) {
        Ok(vectors) if vectors.len() == jobs.len() => {
            for (job, v) in jobs.into_iter().zip(vectors) {
                let _ = job.reply.send(Ok(v));
            }
        }
        Ok(_) => reply_all(jobs, "the model returned the wrong number of query embeddings"),
        Err(reason) => reply_all(jobs, &reason),
    }
}

fn reply_all(jobs: Vec<QueryJob>, reason: &str) {
    for job in jobs {
        let _ = job.reply.send(Err(reason.to_owned()));
    }
}

/// Runs a model call; an error or a panic becomes a message, and the worker lives on.
fn contained<T>(f: impl FnOnce() -> std::result::Result<T, colqwen_core::BoxError>) -> std::result::Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(crate::progress::error_chain(e.as_ref())),
        Err(panic) => Err(format!(
            "the model panicked: {}",
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default()
        )),
    }
}
