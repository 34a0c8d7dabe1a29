//! `/metrics` in the Prometheus text format: the service's counters, the device queue and HTTP requests.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::AppState;

/// Request counters of the HTTP layer.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Answers with a 4xx status.
    pub client_errors: AtomicU64,
    /// Answers with a 5xx status.
    pub server_errors: AtomicU64,
}

pub(crate) fn render(state: &AppState) -> String {
    let m = state.service.metrics();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    };
    counter("colqwen_pages_ingested_total", "Pages embedded and stored by this process.", load(&m.pages_ingested));
    counter("colqwen_pages_failed_total", "Pages that failed to ingest.", load(&m.pages_failed));
    counter("colqwen_search_errors_total", "Searches that failed.", load(&m.search_errors));
    counter("colqwen_http_requests_total", "HTTP requests answered.", load(&state.metrics.requests));
    counter("colqwen_http_client_errors_total", "HTTP answers with a 4xx status.", load(&state.metrics.client_errors));
    counter("colqwen_http_server_errors_total", "HTTP answers with a 5xx status.", load(&state.metrics.server_errors));
    let _ = writeln!(out, "# HELP colqwen_search_latency_seconds Search latency (query embedding and ranking).");
    let _ = writeln!(out, "# TYPE colqwen_search_latency_seconds histogram");
    let mut cumulative = 0;
    for (bound, count) in colqwen::LATENCY_BUCKETS.iter().zip(&m.search_latency_buckets) {
        cumulative += load(count);
        let _ = writeln!(out, "colqwen_search_latency_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let total = load(&m.searches);
    let _ = writeln!(out, "colqwen_search_latency_seconds_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "colqwen_search_latency_seconds_sum {}", load(&m.search_latency_micros) as f64 / 1e6);
    let _ = writeln!(out, "colqwen_search_latency_seconds_count {total}");
    let (queries, pages) = state.service.queue_depths();
    let _ = writeln!(out, "# HELP colqwen_queue_depth Requests waiting for the device worker, by lane.");
    let _ = writeln!(out, "# TYPE colqwen_queue_depth gauge");
    let _ = writeln!(out, "colqwen_queue_depth{{lane=\"queries\"}} {queries}");
    let _ = writeln!(out, "colqwen_queue_depth{{lane=\"pages\"}} {pages}");
    let _ =
        writeln!(out, "# HELP colqwen_jobs_pending Ingest jobs queued or running.\n# TYPE colqwen_jobs_pending gauge");
    let _ = writeln!(out, "colqwen_jobs_pending {}", state.jobs.pending());
    out
}
