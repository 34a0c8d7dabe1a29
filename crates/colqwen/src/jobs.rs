//! Ingest jobs of a long-lived service: a queue run by one thread, each job's progress kept for status
//! queries and event streams, and each job written to `<index>/jobs/<id>.json` so that a job interrupted by a
//! shutdown or a `kill -9` is resumed when the service starts again (its files are known; pages already
//! stored are skipped, so the counts come out exact).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ingest::IngestOptions;
use crate::progress::{Failure, FailureJson, Progress};
use crate::service::Service;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for the job before it.
    Queued,
    /// Ingesting.
    Running,
    /// Finished; every file stored or failed with a reason.
    Done,
    /// Stopped by a cancel request; what was stored is kept.
    Cancelled,
    /// Stopped by a shutdown; resumed at the next start.
    Interrupted,
    /// The run itself failed (e.g. the disk is full); the error says why.
    Failed,
}

/// One file of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileStatus {
    /// The file's name as uploaded (or its path).
    pub name: String,
    /// The file on the server.
    pub path: PathBuf,
    /// Pages to embed in this run (known once the file is opened).
    pub pages_todo: usize,
    /// Pages already in the index.
    pub pages_skipped: usize,
    /// Pages stored by this run.
    pub pages_stored: usize,
    /// Pages that failed.
    pub pages_failed: usize,
    /// Every page is stored and flushed, or the file failed.
    pub done: bool,
    /// Why the file (or a page of it) failed.
    pub errors: Vec<FailureJson>,
}

/// A job as reported by the API and written to disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    /// Job id (hex).
    pub id: String,
    /// Where it is.
    pub state: JobState,
    /// Files in order.
    pub files: Vec<FileStatus>,
    /// Pages stored by this job.
    pub pages_stored: usize,
    /// Error of a failed run.
    pub error: Option<String>,
    /// Seconds since the epoch.
    pub created: u64,
    /// Seconds since the epoch, when it ended.
    pub finished: Option<u64>,
    /// Runs of this job (more than 1 after a resume).
    pub runs: u32,
    /// Bumped at every change (event streams send a new event when it moves).
    pub version: u64,
}

struct Job {
    status: Mutex<JobStatus>,
    cancel: AtomicBool,
    /// The PDF password of an upload: kept in memory only, never written to disk, so a job resumed after a
    /// restart fails on a protected file with "password-protected" and the user uploads it again.
    password: Option<String>,
}

impl Job {
    fn status(&self) -> MutexGuard<'_, JobStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Shared {
    service: Arc<Service>,
    dir: PathBuf,
    opts: IngestOptions,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    queue: Mutex<VecDeque<String>>,
    wake: Condvar,
    stopping: AtomicBool,
    /// Bumped when any job changes.
    changes: AtomicU64,
}

/// The job queue of a service.
pub struct Jobs {
    shared: Arc<Shared>,
    runner: Mutex<Option<JoinHandle<()>>>,
}

impl Jobs {
    /// Starts the runner; jobs left queued, running or interrupted in `<index>/jobs/` are resumed.
    pub fn start(service: Arc<Service>, opts: IngestOptions) -> Result<Self> {
        let dir = service.index_dir().join("jobs");
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io { op: "create", path: dir.clone(), source })?;
        let shared = Arc::new(Shared {
            service,
            dir,
            opts,
            jobs: Mutex::default(),
            queue: Mutex::default(),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            changes: AtomicU64::new(0),
        });
        shared.load_existing();
        let runner = shared.clone();
        let handle = std::thread::Builder::new()
            .name("colqwen-jobs".into())
            .spawn(move || runner.run())
            .map_err(|source| Error::Io { op: "start the job thread for", path: shared.dir.clone(), source })?;
        Ok(Self { shared, runner: Mutex::new(Some(handle)) })
    }

    /// Queues an ingest of `files` (`(display name, path)`); returns the job id.
    pub fn submit(&self, files: Vec<(String, PathBuf)>) -> Result<String> {
        self.submit_with_password(files, None)
    }

    /// Like [`Jobs::submit`], with the password of protected PDFs (held in memory for the job's run only).
    pub fn submit_with_password(&self, files: Vec<(String, PathBuf)>, password: Option<String>) -> Result<String> {
        let id = new_id();
        let status = JobStatus {
            id: id.clone(),
            state: JobState::Queued,
            files: files
                .into_iter()
                .map(|(name, path)| FileStatus {
                    name,
                    path,
                    pages_todo: 0,
                    pages_skipped: 0,
                    pages_stored: 0,
                    pages_failed: 0,
                    done: false,
                    errors: Vec::new(),
                })
                .collect(),
            pages_stored: 0,
            error: None,
            created: now(),
            finished: None,
            runs: 0,
            version: 0,
        };
        self.shared.persist(&status)?;
        self.shared.add(status, password);
        Ok(id)
    }

    /// A job's status.
    pub fn status(&self, id: &str) -> Result<JobStatus> {
        Ok(self.shared.job(id)?.status().clone())
    }

    /// Every job, newest first.
    pub fn list(&self) -> Vec<JobStatus> {
        let jobs = self.shared.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<JobStatus> = jobs.values().map(|j| j.status().clone()).collect();
        all.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        all
    }

    /// Asks a job to stop (a queued job never starts; a running one stops after the batch in hand).
    pub fn cancel(&self, id: &str) -> Result<()> {
        let job = self.shared.job(id)?;
        job.cancel.store(true, Ordering::SeqCst);
        let mut s = job.status();
        if s.state == JobState::Queued {
            s.state = JobState::Cancelled;
            s.finished = Some(now());
            s.version += 1;
            let _ = self.shared.persist(&s);
        }
        Ok(())
    }

    /// Jobs waiting or running.
    pub fn pending(&self) -> usize {
        self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner).len()
            + self.list().iter().filter(|j| j.state == JobState::Running).count()
    }

    /// Stops taking jobs, interrupts the running one after its batch in hand (it is flushed and resumed at the
    /// next start), and waits for the runner.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for job in self.shared.jobs.lock().unwrap_or_else(PoisonError::into_inner).values() {
            if job.status().state == JobState::Running {
                job.cancel.store(true, Ordering::SeqCst);
            }
        }
        self.shared.wake.notify_all();
        if let Some(h) = self.runner.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = h.join();
        }
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn job(&self, id: &str) -> Result<Arc<Job>> {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.get(id).cloned().ok_or_else(|| Error::NoSuchJob(id.into()))
    }

    fn add(&self, status: JobStatus, password: Option<String>) {
        let id = status.id.clone();
        let queued = status.state == JobState::Queued;
        let job = Arc::new(Job { status: Mutex::new(status), cancel: AtomicBool::new(false), password });
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), job);
        if queued {
            self.queue.lock().unwrap_or_else(PoisonError::into_inner).push_back(id);
            self.wake.notify_all();
        }
    }

    /// Jobs of earlier runs: finished ones are listed, unfinished ones queued again (resume).
    fn load_existing(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut found: Vec<JobStatus> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect();
        found.sort_by_key(|s| s.created);
        for mut status in found {
            if matches!(status.state, JobState::Queued | JobState::Running | JobState::Interrupted) {
                tracing::info!(job = %status.id, "resuming an interrupted ingest job");
                status.state = JobState::Queued;
            }
            self.add(status, None);
        }
    }

    fn persist(&self, status: &JobStatus) -> Result<()> {
        let path = self.dir.join(format!("{}.json", status.id));
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(status).unwrap_or_default();
        std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path)).map_err(|source| Error::Io {
            op: "write",
            path,
            source,
        })
    }

    fn update(&self, job: &Job, f: impl FnOnce(&mut JobStatus)) {
        let mut s = job.status();
        f(&mut s);
        s.version += 1;
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    fn run(&self) {
        loop {
            let id = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    if self.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Some(id) = queue.pop_front() {
                        break id;
                    }
                    queue = self.wake.wait(queue).unwrap_or_else(PoisonError::into_inner);
                }
            };
            let Ok(job) = self.job(&id) else { continue };
            if job.cancel.load(Ordering::SeqCst) {
                continue;
            }
            self.run_job(&job);
        }
    }

    fn run_job(&self, job: &Job) {
        let files: Vec<PathBuf> = {
            let mut s = job.status();
            s.state = JobState::Running;
            s.runs += 1;
            s.version += 1;
            for f in &mut s.files {
                (f.pages_todo, f.pages_stored, f.pages_failed, f.done) = (0, 0, 0, false);
                f.errors.clear();
            }
            let _ = self.persist(&s);
            s.files.iter().map(|f| f.path.clone()).collect()
        };
        let progress = JobProgress { shared: self, job };
        let result = match &job.password {
            Some(pw) => {
                let opts = IngestOptions { password: Some(pw.clone()), ..self.opts.clone() };
                self.service.ingest(&files, &opts, &progress, &job.cancel)
            }
            None => self.service.ingest(&files, &self.opts, &progress, &job.cancel),
        };
        let mut s = job.status();
        match result {
            Ok(summary) => {
                s.state = if !summary.cancelled {
                    JobState::Done
                } else if self.stopping.load(Ordering::SeqCst) {
                    JobState::Interrupted
                } else {
                    JobState::Cancelled
                };
                // Files that failed as a whole never reach on_document_done.
                for f in &mut s.files {
                    if !f.errors.is_empty() && f.pages_todo == 0 {
                        f.done = true;
                    }
                }
            }
            Err(e) => {
                s.state = JobState::Failed;
                s.error = Some(crate::progress::error_chain(&e));
            }
        }
        if s.state != JobState::Interrupted {
            s.finished = Some(now());
        }
        s.version += 1;
        self.changes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.persist(&s) {
            tracing::warn!("cannot record job {}: {e}", s.id);
        }
    }
}

struct JobProgress<'a> {
    shared: &'a Shared,
    job: &'a Job,
}

impl JobProgress<'_> {
    fn file(&self, path: &Path, f: impl FnOnce(&mut FileStatus)) {
        self.shared.update(self.job, |s| {
            if let Some(file) = s.files.iter_mut().find(|x| x.path == path) {
                f(file);
            }
        });
    }
}

impl Progress for JobProgress<'_> {
    fn on_document_queued(&self, path: &Path, pages: usize, skipped: usize) {
        self.file(path, |f| (f.pages_todo, f.pages_skipped) = (pages, skipped));
    }

    fn on_pages_stored(&self, path: &Path, n: usize) {
        self.file(path, |f| f.pages_stored += n);
        self.shared.update(self.job, |s| s.pages_stored += n);
    }

    fn on_failure(&self, failure: &Failure) {
        let json = failure.to_json();
        let page = failure.page_index.is_some();
        self.file(&failure.path, |f| {
            if page {
                f.pages_failed += 1;
            }
            f.errors.push(json);
        });
    }

    fn on_document_done(&self, path: &Path) {
        self.file(path, |f| f.done = true);
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// 16 hex digits from the clock and a process-wide counter (unique within an index folder).
fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", nanos ^ (n.rotate_left(48)) ^ u64::from(std::process::id()).rotate_left(32))
}
