//! A page batch's forward pass lets queries in between its layers (`PageEmbedder::embed_pages_paced`, used by
//! the embedding worker): with the committed tiny models of each family on the CPU, a query embedded inside the
//! batch is the query embedded alone, the batch's pages are the unpaced ones bit for bit, the hook runs once per
//! layer of both towers, and through the worker a query sent while the only replica is busy with a page batch is
//! answered before that batch ends.

use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use colqwen::core::{BoxError, MultiVector, PageEmbedder, PageInput};
use colqwen::model::HubOptions;
use colqwen::{DTypeChoice, DeviceChoice, EmbedWorker, Engine, EngineOptions, Runtime};
use colqwen_testkit::{tiny, tiny_adapter, tiny_base};

fn engine(model: &Path) -> Engine {
    let opts = EngineOptions {
        model: Some(model.display().to_string()),
        hub: HubOptions { offline: true, ..Default::default() },
        ..Default::default()
    };
    let runtime = Runtime::resolve(DeviceChoice::Cpu, DTypeChoice::F32).unwrap();
    Engine::load(&model.display().to_string(), &opts, &runtime).unwrap()
}

/// Pages of different sizes (so the batch is packed, not one shape repeated).
fn pages(e: &Engine) -> Vec<PageInput> {
    [(200u32, 260u32), (320, 240), (128, 128)]
        .iter()
        .map(|&(w, h)| {
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x + y) % 256) as u8])
            });
            e.prepare(&img).unwrap()
        })
        .collect()
}

/// Layers of the vision and text towers, from the checkpoint's config (a LoRA adapter's: its base's).
fn layers(model: &Path) -> usize {
    let config = |dir: &Path| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()
    };
    let c = config(model).unwrap_or_else(|| config(&tiny_base()).unwrap());
    let c = c.get("vlm_config").unwrap_or(&c);
    let text = c["text_config"]["num_hidden_layers"].as_u64().or(c["num_hidden_layers"].as_u64()).unwrap();
    let vision = c["vision_config"]["depth"].as_u64().unwrap();
    (text + vision) as usize
}

fn same(a: &[MultiVector], b: &[MultiVector]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.rows == y.rows && x.data == y.data)
}

#[test]
fn queries_between_layers_change_nothing() {
    for model in [tiny_adapter(), tiny("colqwen3-tiny"), tiny("colqwen3_5-tiny")] {
        let what = model.display().to_string();
        let e = engine(&model);
        let alone = e.embed_queries(&["where is the reset pin?"]).unwrap();
        let unpaced = e.embed_pages(pages(&e)).unwrap();
        let mut calls = 0;
        let mut inside = None;
        let paced = {
            let mut between = || {
                calls += 1;
                if calls == 2 {
                    inside = Some(e.embed_queries(&["where is the reset pin?"]).unwrap());
                }
            };
            e.embed_pages_paced(pages(&e), &mut between).unwrap()
        };
        assert_eq!(calls, layers(&model), "{what}: one call per layer of both towers");
        assert!(same(&paced, &unpaced), "{what}: pages changed by pacing");
        assert!(same(&inside.unwrap(), &alone), "{what}: a query embedded inside the batch differs");
    }
}

/// Delegates to the real engine; inside a page batch it tells the test when it is in the batch and then holds the
/// batch open until the test's query has been answered (or 20 s), so the order is certain, not a race.
struct Held {
    engine: Engine,
    in_batch: Mutex<Sender<()>>,
    answered: Mutex<Receiver<()>>,
    answered_inside: Mutex<Option<bool>>,
}

impl PageEmbedder for Held {
    fn model_id(&self) -> &str {
        self.engine.model_id()
    }
    fn family(&self) -> &str {
        self.engine.family()
    }
    fn embedding_dim(&self) -> usize {
        self.engine.embedding_dim()
    }
    fn preprocessing(&self) -> serde_json::Value {
        self.engine.preprocessing()
    }
    fn max_pixels(&self) -> u64 {
        self.engine.max_pixels()
    }
    fn prepare(&self, image: &image::RgbImage) -> Result<PageInput, BoxError> {
        self.engine.prepare(image)
    }
    fn default_batch_size(&self) -> usize {
        self.engine.default_batch_size()
    }
    fn embed_pages(&self, pages: Vec<PageInput>) -> Result<Vec<MultiVector>, BoxError> {
        self.engine.embed_pages(pages)
    }
    fn embed_pages_paced(
        &self,
        pages: Vec<PageInput>,
        between: &mut dyn FnMut(),
    ) -> Result<Vec<MultiVector>, BoxError> {
        let mut first = true;
        let mut hold = || {
            if first {
                first = false;
                let _ = self.in_batch.lock().unwrap().send(());
                // The test queues its query now; the worker's hook embeds what is waiting each time it runs.
                let answered = self.answered.lock().unwrap();
                let start = std::time::Instant::now();
                let ok = loop {
                    between();
                    if answered.recv_timeout(Duration::from_millis(50)).is_ok() {
                        break true;
                    }
                    if start.elapsed() > Duration::from_secs(20) {
                        break false;
                    }
                };
                *self.answered_inside.lock().unwrap() = Some(ok);
            } else {
                between();
            }
        };
        self.engine.embed_pages_paced(pages, &mut hold)
    }
    fn embed_queries(&self, queries: &[&str]) -> Result<Vec<MultiVector>, BoxError> {
        self.engine.embed_queries(queries)
    }
    fn device_name(&self) -> String {
        self.engine.device_name()
    }
}

#[test]
fn worker_answers_a_query_during_a_page_batch() {
    let (in_tx, in_rx) = channel();
    let (ans_tx, ans_rx) = channel();
    let held = Arc::new(Held {
        engine: engine(&tiny_adapter()),
        in_batch: Mutex::new(in_tx),
        answered: Mutex::new(ans_rx),
        answered_inside: Mutex::new(None),
    });
    let worker = Arc::new(EmbedWorker::start(held.clone()));
    let inputs = pages(&held.engine);
    let batch = {
        let worker = worker.clone();
        std::thread::spawn(move || worker.embed_pages(inputs))
    };
    in_rx.recv_timeout(Duration::from_secs(60)).expect("the page batch started");
    // The only replica is inside the page batch now.
    let query = {
        let worker = worker.clone();
        std::thread::spawn(move || {
            let q = worker.embed_query("where is the reset pin?");
            let _ = ans_tx.send(());
            q
        })
    };
    let q = query.join().unwrap().unwrap();
    let pages = batch.join().unwrap().unwrap();
    assert_eq!(*held.answered_inside.lock().unwrap(), Some(true), "the query waited for the whole page batch");
    assert_eq!(pages.len(), 3);
    assert!(same(&[q], &held.engine.embed_queries(&["where is the reset pin?"]).unwrap()));
}
