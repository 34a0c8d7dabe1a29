//! `colqwen-bench http URL CLIENTS SECONDS QUERIES_FILE [KEY]`: search load over HTTP against a running
//! `colqwen serve`. `CLIENTS` threads (comma list, e.g. `1,8,32`: one run each) send `POST /v1/search` back
//! to back for `SECONDS`, cycling through the queries; prints one JSON line per run with p50/p95/p99/max
//! latency, requests/s and failed requests. Meanwhile the server's own ingest (if any) goes on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub(crate) fn run(url: &str, clients: &str, seconds: f64, queries: &str, key: Option<&String>) -> Result<()> {
    let queries: Vec<String> = std::fs::read_to_string(queries)
        .with_context(|| format!("reading {queries}"))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(!queries.is_empty(), "no queries");
    let queries = Arc::new(queries);
    for n in clients.split(',') {
        let n: usize = n.trim().parse().context("CLIENTS is a comma list of numbers")?;
        let stop = Arc::new(AtomicBool::new(false));
        let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        let started = Instant::now();
        let threads: Vec<_> = (0..n)
            .map(|t| {
                let (stop, latencies, failures, queries) =
                    (stop.clone(), latencies.clone(), failures.clone(), queries.clone());
                let url = format!("{}/v1/search", url.trim_end_matches('/'));
                let key = key.cloned();
                std::thread::spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(60)))
                        .build()
                        .into();
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let body = serde_json::json!({ "query": queries[i % queries.len()], "k": 10 });
                        i += 1;
                        let mut req = agent.post(&url);
                        if let Some(k) = &key {
                            req = req.header("Authorization", &format!("Bearer {k}"));
                        }
                        let t0 = Instant::now();
                        let result = req.send_json(&body);
                        let ms = t0.elapsed().as_secs_f64() * 1e3;
                        match result {
                            Ok(mut r) if r.status() == 200 => {
                                let _ = r.body_mut().read_to_string();
                                latencies.lock().map(|mut l| l.push(ms)).ok();
                            }
                            Ok(r) => {
                                failures.lock().map(|mut f| f.push(format!("status {}", r.status()))).ok();
                            }
                            Err(e) => {
                                failures.lock().map(|mut f| f.push(e.to_string())).ok();
                            }
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        let wall = started.elapsed().as_secs_f64();
        let mut l = latencies.lock().map(|l| l.clone()).unwrap_or_default();
        l.sort_by(f64::total_cmp);
        let q = |p: f64| if l.is_empty() { f64::NAN } else { l[((l.len() - 1) as f64 * p).round() as usize] };
        let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
        println!(
            "{}",
            serde_json::json!({
                "clients": n, "requests": l.len(), "failed": failures.len(),
                "first_failure": failures.first(),
                "requests_per_s": l.len() as f64 / wall,
                "p50_ms": q(0.5), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": l.last(),
            })
        );
    }
    Ok(())
}
