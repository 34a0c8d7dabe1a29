//! Render throughput on the fixture corpus at the size render_size gives for a
//! 602112-px target (see NOTES.md).
//!
//!   cargo run --release --example throughput [rounds]
//!
//! CPU time is the calling thread's on-CPU time from /proc/thread-self/schedstat
//! (Linux), so it is less sensitive to other load on the machine than wall time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use colqwen_pdf::{Document, RenderLimits, render_contained, render_size};

const TARGET: u64 = 602_112;

/// Per document: name, pages, cpu, wall, last page's render size.
type DocTiming = (String, usize, Duration, Duration, u32, u32);

fn thread_cpu() -> Duration {
    sched().0
}

/// (on-CPU time, time waiting on the run queue) of the calling thread.
fn sched() -> (Duration, Duration) {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut it = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
    let cpu = it.next().unwrap_or(0);
    let wait = it.next().unwrap_or(0);
    (Duration::from_nanos(cpu), Duration::from_nanos(wait))
}

fn corpus() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pdfs");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Render every page of every document on this thread; returns (pages, cpu, wall) per doc.
fn serial(docs: &[(PathBuf, Vec<u8>)], limits: &RenderLimits) -> Vec<DocTiming> {
    let mut out = vec![];
    for (path, bytes) in docs {
        let (c0, w0) = (thread_cpu(), Instant::now());
        let doc = Document::from_bytes(bytes.clone(), None, &name(path)).unwrap();
        let mut dims = (0, 0);
        for i in 0..doc.page_count() {
            let (w, h) = render_size(doc.page_size_pt(i).unwrap(), TARGET, limits);
            dims = (w, h);
            let img = doc.render_page(i, w, h).unwrap();
            std::hint::black_box(img);
        }
        out.push((name(path), doc.page_count(), thread_cpu() - c0, w0.elapsed(), dims.0, dims.1));
    }
    out
}

/// Same, but with one PageRenderer per document (hayro caches reused across pages).
fn serial_renderer(docs: &[(PathBuf, Vec<u8>)], limits: &RenderLimits) -> Vec<(String, usize, Duration)> {
    let mut out = vec![];
    for (path, bytes) in docs {
        let c0 = thread_cpu();
        let doc = Document::from_bytes(bytes.clone(), None, &name(path)).unwrap();
        let mut r = doc.renderer();
        for i in 0..doc.page_count() {
            let (w, h) = render_size(doc.page_size_pt(i).unwrap(), TARGET, limits);
            std::hint::black_box(r.render_page(i, w, h).unwrap());
        }
        out.push((name(path), doc.page_count(), thread_cpu() - c0));
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    RenderPage,
    Renderer,
    Contained,
}

/// All pages of all documents on `threads` threads; `shared`: one Arc<Document> per
/// file shared by all threads, else each thread opens its own copy of each file.
fn parallel(
    docs: &[(PathBuf, Vec<u8>)],
    threads: usize,
    shared: bool,
    mode: Mode,
    limits: &RenderLimits,
) -> (usize, Duration, Duration) {
    let t0 = Instant::now();
    let opened: Vec<Arc<Document>> =
        docs.iter().map(|(p, b)| Arc::new(Document::from_bytes(b.clone(), None, &name(p)).unwrap())).collect();
    let jobs: Vec<(usize, usize)> =
        opened.iter().enumerate().flat_map(|(d, doc)| (0..doc.page_count()).map(move |i| (d, i))).collect();
    let next = AtomicUsize::new(0);
    let cpu_total = std::sync::Mutex::new(Duration::ZERO);
    // Wall time threads spent neither on a CPU nor waiting for one: blocked (locks, I/O).
    let blocked_total = std::sync::Mutex::new(Duration::ZERO);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let (c0, q0, w0) = (sched().0, sched().1, Instant::now());
                let own: Vec<Arc<Document>> = if shared {
                    opened.clone()
                } else {
                    docs.iter()
                        .map(|(p, b)| Arc::new(Document::from_bytes(b.clone(), None, &name(p)).unwrap()))
                        .collect()
                };
                let mut renderers: Vec<_> = own.iter().map(|d| d.renderer()).collect();
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(d, i)) = jobs.get(j) else { break };
                    let doc = &own[d];
                    let (w, h) = render_size(doc.page_size_pt(i).unwrap(), TARGET, limits);
                    let img = match mode {
                        Mode::Contained => render_contained(doc, i, w, h, limits).unwrap(),
                        Mode::RenderPage => doc.render_page(i, w, h).unwrap(),
                        Mode::Renderer => renderers[d].render_page(i, w, h).unwrap(),
                    };
                    std::hint::black_box(img);
                }
                let (c1, q1) = sched();
                *cpu_total.lock().unwrap() += c1 - c0;
                *blocked_total.lock().unwrap() += w0.elapsed().saturating_sub((c1 - c0) + (q1 - q0));
            });
        }
    });
    let blocked = *blocked_total.lock().unwrap();
    if mode != Mode::Contained {
        eprintln!(
            "    threads={threads} shared={shared}: blocked (off-CPU, not runnable) {:.1} ms in total",
            blocked.as_secs_f64() * 1e3
        );
    }
    (jobs.len(), t0.elapsed(), *cpu_total.lock().unwrap())
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let docs = corpus();
    let limits = RenderLimits::default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cores: {cores}; rounds: {rounds} (best round reported)");
    println!("loadavg at start: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());

    // Warm up (page cache, lazy statics).
    serial(&docs, &limits);

    let mut best: Option<Vec<DocTiming>> = None;
    for _ in 0..rounds {
        let r = serial(&docs, &limits);
        let tot = |r: &Vec<DocTiming>| r.iter().map(|x| x.2).sum::<Duration>();
        if best.as_ref().is_none_or(|b| tot(&r) < tot(b)) {
            best = Some(r);
        }
    }
    let best = best.unwrap();
    println!("\n## single thread, Document::render_page (fresh cache per page)");
    println!(
        "{:<48} {:>5} {:>10} {:>9} {:>10} {:>9}  size",
        "document", "pages", "cpu ms/pg", "pages/s", "wall ms/pg", "pages/s"
    );
    let (mut pages, mut cpu, mut wall) = (0, Duration::ZERO, Duration::ZERO);
    for (n, p, c, w, pw, ph) in &best {
        println!(
            "{:<48} {:>5} {:>10.1} {:>9.1} {:>10.1} {:>9.1}  {pw}x{ph}",
            n,
            p,
            c.as_secs_f64() * 1e3 / *p as f64,
            *p as f64 / c.as_secs_f64(),
            w.as_secs_f64() * 1e3 / *p as f64,
            *p as f64 / w.as_secs_f64()
        );
        pages += p;
        cpu += *c;
        wall += *w;
    }
    println!(
        "{:<48} {:>5} {:>10.1} {:>9.1} {:>10.1} {:>9.1}",
        "TOTAL",
        pages,
        cpu.as_secs_f64() * 1e3 / pages as f64,
        pages as f64 / cpu.as_secs_f64(),
        wall.as_secs_f64() * 1e3 / pages as f64,
        pages as f64 / wall.as_secs_f64()
    );

    let mut best_reuse: Option<Vec<(String, usize, Duration)>> = None;
    for _ in 0..rounds {
        let r = serial_renderer(&docs, &limits);
        let tot = |r: &Vec<(String, usize, Duration)>| r.iter().map(|x| x.2).sum::<Duration>();
        if best_reuse.as_ref().is_none_or(|b| tot(&r) < tot(b)) {
            best_reuse = Some(r);
        }
    }
    println!("\n## single thread, one PageRenderer per document (doc.renderer(): caches reused)");
    let (mut pages, mut cpu) = (0, Duration::ZERO);
    for (n, p, c) in best_reuse.unwrap() {
        println!("{:<48} {:>5} {:>10.1} {:>9.1}", n, p, c.as_secs_f64() * 1e3 / p as f64, p as f64 / c.as_secs_f64());
        pages += p;
        cpu += c;
    }
    println!(
        "{:<48} {:>5} {:>10.1} {:>9.1}",
        "TOTAL",
        pages,
        cpu.as_secs_f64() * 1e3 / pages as f64,
        pages as f64 / cpu.as_secs_f64()
    );

    println!("\n## all pages (148) in parallel, wall pages/s (cpu ms/page summed over threads)");
    for (label, threads, shared, mode) in [
        ("1 thread, render_page", 1, true, Mode::RenderPage),
        ("1 thread, PageRenderer", 1, true, Mode::Renderer),
        ("1 thread, render_contained", 1, true, Mode::Contained),
        ("all cores, shared Arc<Document>, render_page", cores, true, Mode::RenderPage),
        ("all cores, Document per thread, render_page", cores, false, Mode::RenderPage),
        ("all cores, shared, PageRenderer per thread", cores, true, Mode::Renderer),
        ("all cores, shared, render_contained", cores, true, Mode::Contained),
    ] {
        let mut bestp: Option<(usize, Duration, Duration)> = None;
        for _ in 0..rounds {
            let r = parallel(&docs, threads, shared, mode, &limits);
            if bestp.is_none_or(|b| r.1 < b.1) {
                bestp = Some(r);
            }
        }
        let (n, wall, cpu) = bestp.unwrap();
        println!(
            "{label:<48} {:>7.1} pages/s wall  ({:.1} cpu ms/page)",
            n as f64 / wall.as_secs_f64(),
            cpu.as_secs_f64() * 1e3 / n as f64
        );
    }
    println!("\nloadavg at end: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
}
