//! `colqwen._core.IngestRun`: one ingest on a thread of its own, its events handed to Python one at a time.
//!
//! The thread runs `Service::ingest` with a `Progress` that sends every event down a channel; Python takes
//! them with [`IngestRun::next_event`], which waits with the GIL released and checks for signals every 50 ms.
//! On Ctrl-C (or any exception a signal handler raises) it sets the run's cancel flag — the pipeline stops
//! taking pages, stores and flushes the batch in hand, as `colqwen ingest` does on SIGINT — waits for the
//! thread, and raises the exception: the index is intact and the same call again continues where it stopped.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use colqwen::{Failure, IngestOptions, Progress, Service, Summary};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors::{raise, usage};
use crate::index::to_python;

/// How often a waiting call wakes to check for signals.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// One event of a run.
enum Event {
    /// A path passed over while walking folders (a note, not a failure).
    Skipped { path: String, why: &'static str },
    /// A document was opened and read: its id and page count.
    Opened { path: String, doc_id: String, pages: usize },
    /// The file has the same bytes as an earlier file of the run (stored once).
    Duplicate { path: String, first: String },
    /// A document was opened: `pages` to embed, `skipped` already stored.
    Queued { path: String, pages: usize, skipped: usize },
    /// `n` pages went through the model.
    Embedded { n: usize },
    /// `n` pages of a document were written.
    Stored { path: String, n: usize },
    /// A document or page failed; the run goes on.
    Failed(serde_json::Value),
    /// Every page of a document is stored and flushed.
    Done { path: String },
}

/// A failure as Python sees it: the library's JSON plus the error's kind (its exception class).
fn failure_json(f: &Failure) -> serde_json::Value {
    let mut v = serde_json::to_value(f.to_json()).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("kind".into(), f.error.kind().into());
    }
    v
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// The ingest's `Progress`: every event into the channel (a closed channel means nobody listens any more).
struct Events(Mutex<Sender<Event>>);

impl Events {
    fn send(&self, e: Event) {
        let _ = self.0.lock().unwrap_or_else(PoisonError::into_inner).send(e);
    }
}

impl Progress for Events {
    fn on_document_opened(&self, path: &Path, doc_id: &str, page_count: usize) {
        self.send(Event::Opened { path: shown(path), doc_id: doc_id.into(), pages: page_count });
    }
    fn on_duplicate(&self, path: &Path, first: &Path) {
        self.send(Event::Duplicate { path: shown(path), first: shown(first) });
    }
    fn on_document_queued(&self, path: &Path, pages: usize, skipped: usize) {
        self.send(Event::Queued { path: shown(path), pages, skipped });
    }
    fn on_pages_embedded(&self, n: usize) {
        self.send(Event::Embedded { n });
    }
    fn on_pages_stored(&self, path: &Path, n: usize) {
        self.send(Event::Stored { path: shown(path), n });
    }
    fn on_failure(&self, failure: &Failure) {
        self.send(Event::Failed(failure_json(failure)));
    }
    fn on_document_done(&self, path: &Path) {
        self.send(Event::Done { path: shown(path) });
    }
}

/// How the run ended.
enum Outcome {
    Finished(serde_json::Value),
    Failed { kind: &'static str, message: String, hint: Option<String> },
}

/// A running (or finished) ingest.
#[pyclass(module = "colqwen._core", frozen)]
pub(crate) struct IngestRun {
    cancel: Arc<AtomicBool>,
    events: Mutex<Receiver<Event>>,
    thread: Mutex<Option<JoinHandle<colqwen::Result<Summary>>>>,
    outcome: Mutex<Option<Outcome>>,
    /// Files the run was given after expanding folders and globs.
    files: usize,
}

impl IngestRun {
    /// Expands `paths` and starts the ingest; the paths that cannot be used are its first failures.
    pub(crate) fn start(
        py: Python<'_>,
        service: Arc<Service>,
        paths: Vec<String>,
        opts: IngestOptions,
    ) -> PyResult<Self> {
        let found = py.detach(|| colqwen::discover(&paths, &|_| {}));
        if found.files.is_empty() && found.problems.is_empty() {
            return Err(usage(
                format!("no PDF files found in {}", paths.join(", ")),
                "give PDF files, folders holding *.pdf files, or a glob pattern such as 'docs/*.pdf'",
            ));
        }
        let (tx, rx) = channel();
        let events = Events(Mutex::new(tx));
        for (path, why) in &found.skipped {
            events.send(Event::Skipped { path: shown(path), why });
        }
        let problems: Vec<Failure> = found.problems;
        for p in &problems {
            events.send(Event::Failed(failure_json(p)));
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let files = found.files;
        let count = files.len();
        let thread = std::thread::Builder::new()
            .name("colqwen-ingest".into())
            .spawn(move || {
                let mut summary = service.ingest(&files, &opts, &events, &flag)?;
                summary.failures.splice(0..0, problems);
                Ok(summary)
            })
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start the ingest thread: {e}")))?;
        Ok(Self {
            cancel,
            events: Mutex::new(rx),
            thread: Mutex::new(Some(thread)),
            outcome: Mutex::new(None),
            files: count,
        })
    }

    /// Waits for the thread (GIL released) and keeps how it ended.
    fn join(&self, py: Python<'_>) {
        let handle = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(handle) = handle else { return };
        let result = py.detach(|| handle.join());
        let outcome = match result {
            Ok(Ok(summary)) => {
                let mut json = summary.to_json();
                if let Some(list) = json.get_mut("failures").and_then(|f| f.as_array_mut()) {
                    *list = summary.failures.iter().map(failure_json).collect();
                }
                Outcome::Finished(json)
            }
            Ok(Err(e)) => Outcome::Failed { kind: e.kind(), message: colqwen::error_chain(&e), hint: e.hint() },
            Err(_) => Outcome::Failed {
                kind: "internal",
                message: "the ingest thread panicked".into(),
                hint: Some("report it with the file that caused it; the index keeps what was flushed".into()),
            },
        };
        *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
    }

    /// `("end", summary)`, or the run's error raised.
    fn end<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.join(py);
        let outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome.as_ref() {
            Some(Outcome::Finished(summary)) => {
                Ok(PyTuple::new(py, ["end".into_pyobject(py)?.into_any(), to_python(py, summary)?])?.into_any())
            }
            Some(Outcome::Failed { kind, message, hint }) => Err(raise(kind, message.clone(), hint.clone())),
            None => Err(pyo3::exceptions::PyRuntimeError::new_err("the ingest ended without an outcome")),
        }
    }
}

fn event<'py>(py: Python<'py>, e: Event) -> PyResult<Bound<'py, PyAny>> {
    let t = match e {
        Event::Skipped { path, why } => ("skipped", path, why).into_pyobject(py)?.into_any(),
        Event::Opened { path, doc_id, pages } => ("opened", path, doc_id, pages).into_pyobject(py)?.into_any(),
        Event::Duplicate { path, first } => ("duplicate", path, first).into_pyobject(py)?.into_any(),
        Event::Queued { path, pages, skipped } => ("queued", path, pages, skipped).into_pyobject(py)?.into_any(),
        Event::Embedded { n } => ("embedded", n).into_pyobject(py)?.into_any(),
        Event::Stored { path, n } => ("stored", path, n).into_pyobject(py)?.into_any(),
        Event::Failed(f) => ("failed", to_python(py, &f)?).into_pyobject(py)?.into_any(),
        Event::Done { path } => ("done", path).into_pyobject(py)?.into_any(),
    };
    Ok(t)
}

#[pymethods]
impl IngestRun {
    /// The next event, waiting up to `timeout` seconds (`None` when none came): `("skipped", path, why)`,
    /// `("opened", path, doc_id, page_count)`, `("duplicate", path, first)`, `("queued", path, pages, skipped)`, `("embedded", n)`, `("stored", path, n)`, `("failed", failure)`,
    /// `("done", path)`, and last `("end", summary)` (again on every later call). Raises the run's error if it
    /// stopped on one (a full disk, an index server gone), and `KeyboardInterrupt` on Ctrl-C after the run
    /// stopped and flushed what it had.
    #[pyo3(signature = (timeout=None))]
    fn next_event<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.clamp(0.0, 1e9)));
        loop {
            let step = deadline.map_or(SIGNAL_POLL, |d| d.saturating_duration_since(Instant::now()).min(SIGNAL_POLL));
            let got = py.detach(|| self.events.lock().unwrap_or_else(PoisonError::into_inner).recv_timeout(step));
            match got {
                Ok(e) => return event(py, e).map(Some),
                Err(RecvTimeoutError::Disconnected) => return self.end(py).map(Some),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(interrupt) = py.check_signals() {
                        self.cancel.store(true, Ordering::SeqCst);
                        self.join(py);
                        return Err(interrupt);
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Asks the run to stop: no new page is taken; the batch in hand is stored and flushed. Returns at once.
    fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Whether the ingest thread is still working.
    #[getter]
    fn running(&self) -> bool {
        self.thread.lock().unwrap_or_else(PoisonError::into_inner).as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Files the run ingests (after expanding folders and globs).
    #[getter]
    fn files(&self) -> usize {
        self.files
    }
}

impl Drop for IngestRun {
    /// A run nobody waits for any more stops after the batch in hand (its thread stores and flushes it).
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
}

/// Expands paths as an ingest does (files, folders searched for `*.pdf`, globs): `(files, problems)`, each
/// problem a failure (path, error, hint, kind). The client uploads what this finds.
#[pyfunction]
pub(crate) fn discover<'py>(py: Python<'py>, paths: Vec<String>) -> PyResult<(Vec<String>, Bound<'py, PyAny>)> {
    let found = py.detach(|| colqwen::discover(&paths, &|_| {}));
    let files = found.files.iter().map(|p| shown(p)).collect();
    let problems = serde_json::Value::Array(found.problems.iter().map(failure_json).collect());
    Ok((files, to_python(py, &problems)?))
}
