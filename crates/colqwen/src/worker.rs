//! One embedding worker per device: a thread that owns every call into the model, fed by a queue with two
//! lanes. Queries go ahead of page batches, so a search waits at most for the one page batch that is on the
//! device when it arrives; waiting queries are embedded together in one forward pass.

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
}

#[derive(Default)]
struct Lanes {
    queries: VecDeque<QueryJob>,
    pages: VecDeque<PageJob>,
    stopping: bool,
}

struct Shared {
    lanes: Mutex<Lanes>,
    wake: Condvar,
    embedder: Arc<dyn PageEmbedder>,
}

impl Shared {
    fn lanes(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The device's worker; dropping it stops the thread after the job in hand.
pub struct EmbedWorker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl EmbedWorker {
    /// Starts the worker thread for `embedder`.
    pub fn start(embedder: Arc<dyn PageEmbedder>) -> Self {
        let shared = Arc::new(Shared { lanes: Mutex::default(), wake: Condvar::new(), embedder });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("colqwen-embed".into())
            .spawn(move || run(&worker))
            .map_err(|e| tracing::error!("cannot start the embedding worker: {e}"))
            .ok();
        Self { shared, thread }
    }

    /// The model behind the worker (for its identity and for page preparation, which runs on other threads).
    pub fn embedder(&self) -> &Arc<dyn PageEmbedder> {
        &self.shared.embedder
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
            if lanes.stopping || self.thread.is_none() {
                return Err(Error::WorkerStopped);
            }
            for t in texts {
                lanes.queries.push_back(QueryJob { text: (*t).to_owned(), reply: tx.clone() });
            }
        }
        self.shared.wake.notify_one();
        drop(tx);
        (0..texts.len()).map(|_| answer(rx.recv())).collect()
    }

    /// Embeds a batch of prepared pages (after every waiting query).
    pub fn embed_pages(&self, inputs: Vec<PageInput>) -> Result<Vec<MultiVector>> {
        let n = inputs.len();
        let (tx, rx) = channel();
        {
            let mut lanes = self.shared.lanes();
            if lanes.stopping || self.thread.is_none() {
                return Err(Error::WorkerStopped);
            }
            lanes.pages.push_back(PageJob { inputs, reply: tx });
        }
        self.shared.wake.notify_one();
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
        if let Some(t) = self.thread.take() {
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

fn run(shared: &Shared) {
    loop {
        let work = {
            let mut lanes = shared.lanes();
            loop {
                if !lanes.queries.is_empty() {
                    let n = lanes.queries.len().min(MAX_QUERY_BATCH);
                    break Work::Queries(lanes.queries.drain(..n).collect());
                }
                if let Some(job) = lanes.pages.pop_front() {
                    break Work::Pages(job);
                }
                if lanes.stopping {
                    return;
                }
                lanes = shared.wake.wait(lanes).unwrap_or_else(PoisonError::into_inner);
            }
        };
        match work {
            Work::Queries(jobs) => {
                let texts: Vec<&str> = jobs.iter().map(|j| j.text.as_str()).collect();
                match contained(|| shared.embedder.embed_queries(&texts)) {
                    Ok(vectors) if vectors.len() == jobs.len() => {
                        for (job, v) in jobs.into_iter().zip(vectors) {
                            let _ = job.reply.send(Ok(v));
                        }
                    }
                    Ok(_) => reply_all(jobs, "the model returned the wrong number of query embeddings"),
                    Err(reason) => reply_all(jobs, &reason),
                }
            }
            Work::Pages(job) => {
                let n = job.inputs.len();
                let result = contained(|| shared.embedder.embed_pages(job.inputs)).and_then(|v| {
                    if v.len() == n {
                        Ok(v)
                    } else {
                        Err("the model returned the wrong number of page embeddings".into())
                    }
                });
                let _ = job.reply.send(result);
            }
        }
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
