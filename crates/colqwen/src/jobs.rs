//! Ingest jobs of a long-lived service: a queue run by one thread, each job's progress kept for status
//! queries and event streams, and each job written to `<index>/jobs/<id>.json` so that a job interrupted by a
//! shutdown or a `kill -9` is resumed when the service starts again (its files are known; pages already
//! stored are skipped, so the counts come out exact).
//!
//! A job's counts are the job's own, over all its runs: the first time a run opens a file, the pages already in
//! the index are recorded (`pages_skipped`, written to disk before any page of the file is stored), and every
//! later run (a resume after a `kill -9`, a SIGTERM or a cancel) counts what it finds stored beyond them as
//! stored by the job. So `pages_stored` is the same whether the last run ended cleanly or was killed.
//!
//! Finished jobs are kept for a while and then pruned ([`MAX_FINISHED_JOBS`], [`MAX_FINISHED_AGE`]).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// Finished; every file stored, settled (a duplicate, deleted) or failed with a reason, and at least one
    /// was not a failure.
    Done,
    /// Stopped by a cancel request; what was stored is kept, and `POST /v1/jobs/{id}/resume` ([`Jobs::resume`])
    /// runs it again.
    Cancelled,
    /// Stopped by a shutdown; resumed at the next start.
    Interrupted,
    /// The run itself failed (e.g. the disk is full: resumable) or every file failed; the error says why.
    Failed,
}

impl JobState {
    /// Queued or running.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }
}

/// One file of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileStatus {
    /// The file's name as uploaded (or its path).
    pub name: String,
    /// The file on the server.
    pub path: PathBuf,
    /// The document the file is (its content hash's id), once known: at upload, or when a run opens it.
    #[serde(default)]
    pub doc_id: Option<String>,
    /// Pages the file has, once a run opened it.
    #[serde(default)]
    pub page_count: Option<usize>,
    /// Pages this job has to store (the file's pages less `pages_skipped`; known once the file is opened).
    pub pages_todo: usize,
    /// Pages already in the index when the job first opened the file.
    pub pages_skipped: usize,
    /// Pages stored by this job, over all its runs.
    pub pages_stored: usize,
    /// Pages that failed in the last run.
    pub pages_failed: usize,
    /// Every page is stored and flushed, or the file failed, or it is settled without an ingest (see `note`).
    pub done: bool,
    /// Why the file (or a page of it) failed.
    pub errors: Vec<FailureJson>,
    /// The document whose content this file has, when it is a duplicate (already stored, or the same bytes as
    /// another file of the job): it is stored once, and this file keeps no copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    /// What happened to the file, in words, when it was settled without an ingest of its own (a duplicate, a
    /// document deleted while it was being ingested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A run has opened the file: `pages_skipped` is fixed (written to disk before any page was stored).
    #[serde(default)]
    pub opened: bool,
}

impl FileStatus {
    /// A file to ingest.
    pub fn new(name: impl Into<String>, path: PathBuf) -> Self {
        Self {
            name: name.into(),
            path,
            doc_id: None,
            page_count: None,
            pages_todo: 0,
            pages_skipped: 0,
            pages_stored: 0,
            pages_failed: 0,
            done: false,
            errors: Vec::new(),
            duplicate_of: None,
            note: None,
            opened: false,
        }
    }

    /// A file settled before any run: `note` says why (e.g. a duplicate whose content is stored already).
    pub fn settled(mut self, note: impl Into<String>) -> Self {
        self.done = true;
        self.note = Some(note.into());
        self
    }

    /// Done without an ingest of its own (a duplicate, a deleted document): no run touches it again.
    pub fn is_settled(&self) -> bool {
        self.done && self.note.is_some()
    }

    /// Nothing of the file is stored and it failed.
    pub fn is_failed(&self) -> bool {
        !self.errors.is_empty() && self.pages_stored == 0 && self.pages_skipped == 0 && !self.is_settled()
    }
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
    /// Pages stored by this job (the sum over its files).
    pub pages_stored: usize,
    /// Error of a failed run.
    pub error: Option<String>,
    /// Whether [`Jobs::resume`] can run it again: a cancelled job, or a run that failed as a whole (e.g. the
    /// disk was full). A job whose every file failed is not: the files are what failed.
    #[serde(default)]
    pub resumable: bool,
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

/// Finished jobs kept (the newest); older ones are pruned with their files (see [`Jobs::prune`]).
pub const MAX_FINISHED_JOBS: usize = 200;
/// Finished jobs older than this are pruned.
pub const MAX_FINISHED_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

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
    /// Bumped when a job ends (done, failed, cancelled) or is pruned: its files may no longer be needed.
    ended: AtomicU64,
}

/// Why a job cannot do what was asked (the server answers 409).
#[derive(Debug, Clone, thiserror::Error)]
#[error("job {id} is {state}: {reason}")]
pub struct JobConflict {
    /// The job.
    pub id: String,
    /// Where it is.
    pub state: String,
    /// Why the request does not apply.
    pub reason: &'static str,
}

/// The job queue of a service.
pub struct Jobs {
    shared: Arc<Shared>,
    runner: Mutex<Option<JoinHandle<()>>>,
}

impl Jobs {
    /// Starts the runner; jobs left queued, running or interrupted in `<index>/jobs/` are resumed, and finished
    /// jobs beyond the limits are pruned.
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
            ended: AtomicU64::new(0),
        });
        shared.load_existing();
        let runner = shared.clone();
        let handle = std::thread::Builder::new()
            .name("colqwen-jobs".into())
            .spawn(move || runner.run())
            .map_err(|source| Error::Io { op: "start the job thread for", path: shared.dir.clone(), source })?;
        let jobs = Self { shared, runner: Mutex::new(Some(handle)) };
        jobs.prune();
        Ok(jobs)
    }

    /// Queues an ingest of `files` (`(display name, path)`); returns the job id.
    pub fn submit(&self, files: Vec<(String, PathBuf)>) -> Result<String> {
        self.submit_with_password(files, None)
    }

    /// Like [`Jobs::submit`], with the password of protected PDFs (held in memory for the job's run only).
    pub fn submit_with_password(&self, files: Vec<(String, PathBuf)>, password: Option<String>) -> Result<String> {
        self.submit_files(files.into_iter().map(|(name, path)| FileStatus::new(name, path)).collect(), password)
    }

    /// Queues a job of `files` as given (some may be settled already, e.g. duplicates of stored documents);
    /// returns the job id. Finished jobs beyond the limits are pruned.
    pub fn submit_files(&self, files: Vec<FileStatus>, password: Option<String>) -> Result<String> {
        let id = new_id();
        let status = JobStatus {
            id: id.clone(),
            state: JobState::Queued,
            pages_stored: 0,
            files,
            error: None,
            resumable: false,
            created: now(),
            finished: None,
            runs: 0,
            version: 0,
        };
        self.shared.persist(&status)?;
        self.shared.add(status, password);
        self.prune();
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

    /// Asks a job to stop (a queued job never starts; a running one stops after the batch in hand). A job that
    /// is no longer queued or running cannot be cancelled ([`JobConflict`]).
    pub fn cancel(&self, id: &str) -> Result<std::result::Result<(), JobConflict>> {
        let job = self.shared.job(id)?;
        let mut s = job.status();
        if !s.state.is_active() {
            return Ok(Err(conflict(&s, "only a queued or running job can be cancelled")));
        }
        job.cancel.store(true, Ordering::SeqCst);
        if s.state == JobState::Queued {
            s.state = JobState::Cancelled;
            s.resumable = true;
            s.finished = Some(now());
            s.version += 1;
            let _ = self.shared.persist(&s);
            self.shared.ended.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Ok(()))
    }

    /// Queues a cancelled job (or one whose run failed as a whole) again: pages already stored are skipped, the
    /// rest are ingested. The PDF password of an upload lives in memory only: after a restart a resumed job has
    /// none, and a protected file fails asking for it.
    pub fn resume(&self, id: &str) -> Result<std::result::Result<(), JobConflict>> {
        let job = self.shared.job(id)?;
        {
            let mut s = job.status();
            if !s.resumable || s.state.is_active() {
                let reason = match s.state {
                    JobState::Queued | JobState::Running => "it has not stopped",
                    JobState::Done => "it is finished: upload the files again to ingest them again",
                    _ => "its files failed: upload them again (or fixed) as a new job",
                };
                return Ok(Err(conflict(&s, reason)));
            }
            job.cancel.store(false, Ordering::SeqCst);
            s.state = JobState::Queued;
            s.resumable = false;
            s.error = None;
            s.finished = None;
            s.version += 1;
            self.shared.persist(&s)?;
        }
        self.shared.changes.fetch_add(1, Ordering::Relaxed);
        self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner).push_back(id.to_string());
        self.shared.wake.notify_all();
        Ok(Ok(()))
    }

    /// Jobs waiting or running.
    pub fn pending(&self) -> usize {
        self.list().iter().filter(|j| j.state.is_active()).count()
    }

    /// A number that grows when a job ends or is pruned (its files may no longer be needed).
    pub fn ended(&self) -> u64 {
        self.shared.ended.load(Ordering::SeqCst)
    }

    /// The files that jobs may still read: every file of a job that is queued, running, interrupted or
    /// resumable.
    pub fn files_in_use(&self) -> Vec<PathBuf> {
        let jobs = self.shared.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut files = Vec::new();
        for job in jobs.values() {
            let s = job.status();
            if s.state.is_active() || s.state == JobState::Interrupted || s.resumable {
                files.extend(s.files.iter().filter(|f| !f.is_settled()).map(|f| f.path.clone()));
            }
        }
        files
    }

    /// Whether a job that may still run (queued, running, resumable) holds a file of document `doc_id`.
    pub fn holds_document(&self, doc_id: &str) -> bool {
        let jobs = self.shared.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.values().any(|j| {
            let s = j.status();
            (s.state.is_active() || s.resumable)
                && s.files.iter().any(|f| !f.is_settled() && f.doc_id.as_deref() == Some(doc_id))
        })
    }

    /// A document is being deleted: every file of it in a job that may still run is settled with a note saying
    /// so, its pages stored by the job are no longer counted, and no run ingests it again (a run that has the
    /// file in its list asks [`Progress::still_wanted`] when it opens it). Call it before
    /// [`Service::delete_document`], which stops a run that is writing the document already. Returns the files
    /// (paths) so settled.
    pub fn forget_document(&self, doc_id: &str) -> Vec<PathBuf> {
        let jobs: Vec<Arc<Job>> =
            self.shared.jobs.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        let mut paths = Vec::new();
        for job in jobs {
            let mut s = job.status();
            if !(s.state.is_active() || s.resumable || s.state == JobState::Interrupted) {
                continue;
            }
            let mut changed = false;
            for f in s.files.iter_mut().filter(|f| !f.is_settled() && f.doc_id.as_deref() == Some(doc_id)) {
                let note = if f.pages_stored > 0 {
                    format!(
                        "deleted while it was being ingested: the {} pages stored by then were removed with it, the \
                         others were not ingested",
                        f.pages_stored
                    )
                } else {
                    "deleted before it was ingested: nothing of it is stored".to_string()
                };
                f.pages_stored = 0;
                f.errors.clear();
                f.pages_failed = 0;
                f.done = true;
                f.note = Some(note);
                paths.push(f.path.clone());
                changed = true;
            }
            if changed {
                s.pages_stored = s.files.iter().map(|f| f.pages_stored).sum();
                s.version += 1;
                let _ = self.shared.persist(&s);
            }
        }
        self.shared.changes.fetch_add(1, Ordering::Relaxed);
        paths
    }

    /// Removes finished jobs beyond the newest [`MAX_FINISHED_JOBS`] and those that finished more than
    /// [`MAX_FINISHED_AGE`] ago (memory and `<index>/jobs/`). Returns how many were removed.
    pub fn prune(&self) -> usize {
        let mut jobs = self.shared.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut finished: Vec<(u64, String)> = jobs
            .iter()
            .filter_map(|(id, j)| {
                let s = j.status();
                (!s.state.is_active() && s.state != JobState::Interrupted)
                    .then(|| (s.finished.unwrap_or(s.created), id.clone()))
            })
            .collect();
        finished.sort_by(|a, b| b.cmp(a));
        let oldest = now().saturating_sub(MAX_FINISHED_AGE.as_secs());
        let mut removed = 0;
        for (i, (at, id)) in finished.into_iter().enumerate() {
            if i >= MAX_FINISHED_JOBS || at < oldest {
                jobs.remove(&id);
                let _ = std::fs::remove_file(self.shared.dir.join(format!("{id}.json")));
                removed += 1;
            }
        }
        if removed > 0 {
            self.shared.ended.fetch_add(1, Ordering::SeqCst);
        }
        removed
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

fn conflict(s: &JobStatus, reason: &'static str) -> JobConflict {
    let state = serde_json::to_value(s.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    JobConflict { id: s.id.clone(), state, reason }
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
            if job.cancel.load(Ordering::SeqCst) || job.status().state != JobState::Queued {
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
            for f in s.files.iter_mut().filter(|f| !f.is_settled()) {
                // What the last run failed is tried again; what it stored is counted when the file is opened.
                (f.pages_failed, f.done) = (0, false);
                f.errors.clear();
            }
            let _ = self.persist(&s);
            let mut files: Vec<PathBuf> = Vec::new();
            for f in s.files.iter().filter(|f| !f.is_settled()) {
                if !files.contains(&f.path) {
                    files.push(f.path.clone());
                }
            }
            files
        };
        let progress = JobProgress { shared: self, job };
        let result = if files.is_empty() {
            Ok(crate::progress::Summary::default())
        } else {
            match &job.password {
                Some(pw) => {
                    let opts = IngestOptions { password: Some(pw.clone()), ..self.opts.clone() };
                    self.service.ingest(&files, &opts, &progress, &job.cancel)
                }
                None => self.service.ingest(&files, &self.opts, &progress, &job.cancel),
            }
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
                s.resumable = s.state == JobState::Cancelled;
                // Files that failed as a whole never reach on_document_done.
                for f in &mut s.files {
                    if !f.errors.is_empty() && f.pages_todo == 0 {
                        f.done = true;
                    }
                }
                if s.state == JobState::Done && !s.files.is_empty() && s.files.iter().all(FileStatus::is_failed) {
                    s.state = JobState::Failed;
                    let first = s.files.iter().flat_map(|f| &f.errors).map(|e| e.error.clone()).next();
                    s.error = Some(format!(
                        "no file of the job could be ingested{}",
                        first.map(|e| format!(": {e}")).unwrap_or_default()
                    ));
                }
            }
            Err(e) => {
                s.state = JobState::Failed;
                s.resumable = true;
                s.error = Some(crate::progress::error_chain(&e));
            }
        }
        if s.state != JobState::Interrupted {
            s.finished = Some(now());
        }
        s.pages_stored = s.files.iter().map(|f| f.pages_stored).sum();
        s.version += 1;
        self.changes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.persist(&s) {
            tracing::warn!("cannot record job {}: {e}", s.id);
        }
        drop(s);
        self.ended.fetch_add(1, Ordering::SeqCst);
    }
}

struct JobProgress<'a> {
    shared: &'a Shared,
    job: &'a Job,
}

impl JobProgress<'_> {
    /// Updates the (first unsettled) file at `path`; `persist`: write the job to disk before returning.
    fn file(&self, path: &Path, persist: bool, f: impl FnOnce(&mut FileStatus)) {
        let mut s = self.job.status();
        if let Some(file) = s.files.iter_mut().find(|x| x.path == path && !x.is_settled()) {
            f(file);
        }
        s.pages_stored = s.files.iter().map(|f| f.pages_stored).sum();
        s.version += 1;
        self.shared.changes.fetch_add(1, Ordering::Relaxed);
        if persist && let Err(e) = self.shared.persist(&s) {
            tracing::warn!("cannot record job {}: {e}", s.id);
        }
    }
}

impl Progress for JobProgress<'_> {
    fn on_document_opened(&self, path: &Path, doc_id: &str, page_count: usize) {
        self.file(path, false, |f| (f.doc_id, f.page_count) = (Some(doc_id.to_string()), Some(page_count)));
    }

    fn still_wanted(&self, path: &Path, _doc_id: &str) -> bool {
        // Settled meanwhile (its document deleted: [`Jobs::forget_document`]): not ingested.
        self.job.status().files.iter().any(|x| x.path == path && !x.is_settled())
    }

    fn on_document_queued(&self, path: &Path, pages: usize, skipped: usize) {
        // The first run that opens the file fixes what was stored before the job (on disk before any page of
        // the file is stored); what a later run finds stored beyond it was stored by this job's earlier runs.
        let mut first = false;
        self.file(path, false, |f| {
            if !f.opened {
                (f.opened, f.pages_skipped, first) = (true, skipped, true);
            }
            f.pages_stored = skipped.saturating_sub(f.pages_skipped);
            f.pages_todo = (pages + skipped).saturating_sub(f.pages_skipped);
        });
        if first {
            self.file(path, true, |_| {});
        }
    }

    fn on_pages_stored(&self, path: &Path, n: usize) {
        self.file(path, false, |f| f.pages_stored += n);
    }

    fn on_failure(&self, failure: &Failure) {
        let mut json = failure.to_json();
        let page = failure.page_index.is_some();
        let path = failure.path.display().to_string();
        self.file(&failure.path, false, |f| {
            if page {
                f.pages_failed += 1;
            }
            // The message names the file as its user knows it (an upload's name), not by where the server keeps it.
            if !path.is_empty() {
                json.error = json.error.replace(&path, &f.name);
            }
            f.errors.push(json);
        });
    }

    fn on_duplicate(&self, path: &Path, first: &Path) {
        let mut s = self.job.status();
        let earlier = s.files.iter().find(|x| x.path == first).map(|f| (f.name.clone(), f.doc_id.clone()));
        if let Some(file) = s.files.iter_mut().find(|x| x.path == path && !x.is_settled()) {
            let (name, doc_id) = earlier.unwrap_or_default();
            file.done = true;
            file.duplicate_of = doc_id;
            file.note = Some(format!("the same content as {name} of this job: stored once"));
        }
        s.version += 1;
        self.shared.changes.fetch_add(1, Ordering::Relaxed);
    }

    fn on_document_done(&self, path: &Path) {
        self.file(path, false, |f| f.done = true);
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
