//! CPU time per image and per query for a model folder (default: the tiny fixture adapter).
//! `cargo run --release -p colqwen-model --example embed_timing [MODEL_DIR] [IMAGE...]`
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;

use colqwen_model::{ColQwen, DType, Device, HubOptions, LoadOptions, ModelFiles};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/tiny");
    let model = args.first().cloned().unwrap_or(format!("{fixtures}/colqwen2.5-tiny-v0.2"));
    let images: Vec<String> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        (0..7).map(|i| format!("{fixtures}/golden/images/{i:02}.png")).collect()
    };
    let files = ModelFiles::resolve(&model, None, &HubOptions { offline: true, ..Default::default() }).unwrap();
    let m = ColQwen::load(&files, &Device::Cpu, DType::F32, &LoadOptions::default()).unwrap();
    let imgs: Vec<_> = images.iter().map(|p| image::open(p).unwrap().to_rgb8()).collect();
    let mut per_image = Vec::new();
    for _ in 0..5 {
        for img in &imgs {
            let t = Instant::now();
            m.embed_images(std::slice::from_ref(img)).unwrap();
            per_image.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let queries = ["how do I reset the firmware?", "Quelle est la température maximale ?", "表の権限指定子"];
    let mut per_query = Vec::new();
    for _ in 0..10 {
        for q in queries {
            let t = Instant::now();
            m.embed_queries(&[q]).unwrap();
            per_query.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    println!(
        "model {model}: median {:.2} ms per image (batch 1, {} images), {:.2} ms per query",
        median(per_image),
        imgs.len(),
        median(per_query)
    );
}
