//! Open each PDF given and render its first pages contained, printing what happened:
//! `cargo run --release --example probe -- a.pdf b.pdf ...` (see NOTES.md).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use colqwen_pdf::{Document, RenderLimits, render_contained, render_size};

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        .map_or(0, |kb| kb / 1024)
}

#[allow(clippy::print_stdout)]
fn main() {
    let limits = RenderLimits { time_budget: Duration::from_secs(10), max_hung_renders: 64, ..RenderLimits::default() };
    for arg in std::env::args().skip(1) {
        let t = Instant::now();
        let doc = match Document::open(Path::new(&arg), None) {
            Ok(d) => Arc::new(d),
            Err(e) => {
                println!("OPEN-ERR {:>6} ms  {e}", t.elapsed().as_millis());
                continue;
            }
        };
        println!("OPEN {:>6} ms  {arg}: {doc:?}", t.elapsed().as_millis());
        for i in 0..doc.page_count().min(3) {
            let t = Instant::now();
            let size = doc.page_size_pt(i);
            let Ok(size) = size else { continue };
            let (w, h) = render_size(size, 602_112, &limits);
            let r = render_contained(&doc, i, w, h, &limits);
            let what = match r {
                Ok(img) => format!(
                    "ok {}x{} size_pt {size:?}, {} non-white",
                    img.width(),
                    img.height(),
                    img.pixels().filter(|p| p.0 != [255, 255, 255]).count()
                ),
                Err(e) => format!("ERR {e}"),
            };
            println!("  page {i}: {:>6} ms rss {} MiB  {what}", t.elapsed().as_millis(), peak_rss_mib());
        }
    }
}
