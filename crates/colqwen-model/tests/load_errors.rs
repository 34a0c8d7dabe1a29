//! Bad model folders give errors that name the file and what is wrong.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use colqwen_model::{ColQwen, Error, HubOptions, LoadOptions, ModelFiles};
use colqwen_testkit::tiny_base;

/// A writable copy of the tiny base checkpoint.
fn copy_base() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("base");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(tiny_base()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    (tmp, dir)
}

fn offline() -> HubOptions {
    HubOptions { offline: true, ..Default::default() }
}

fn load(dir: &Path) -> Result<ColQwen, Error> {
    let files = ModelFiles::resolve(dir.to_str().unwrap(), None, &offline())?;
    ColQwen::load(&files, &Device::Cpu, DType::F32, &LoadOptions::default())
}

fn first_shard(dir: &Path) -> PathBuf {
    dir.join("model-00001-of-00002.safetensors")
}

/// Rewrites the first shard through `edit`.
fn edit_shard(dir: &Path, edit: impl FnOnce(&mut std::collections::HashMap<String, Tensor>)) {
    let path = first_shard(dir);
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

#[test]
fn the_unmodified_copy_loads() {
    let (_tmp, dir) = copy_base();
    load(&dir).unwrap();
}

#[test]
fn missing_file_is_named() {
    let (_tmp, dir) = copy_base();
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let err = load(&dir).unwrap_err();
    assert!(matches!(err, Error::MissingFile { ref file, .. } if file == "tokenizer.json"), "{err}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn truncated_safetensors_names_the_file() {
    let (_tmp, dir) = copy_base();
    let shard = first_shard(&dir);
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(&dir).unwrap_err();
    assert!(matches!(err, Error::Safetensors { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("model-00001-of-00002.safetensors") && msg.contains("truncated"), "{msg}");
}

#[test]
fn wrong_shape_names_tensor_file_and_shapes() {
    let (_tmp, dir) = copy_base();
    let mut victim = String::new();
    edit_shard(&dir, |t| {
        victim = t.keys().filter(|k| k.ends_with("norm.weight") || k.ends_with("ln_q.weight")).min().unwrap().clone();
        t.insert(victim.clone(), Tensor::zeros(7, DType::BF16, &Device::Cpu).unwrap());
    });
    let err = load(&dir).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{msg}");
    assert!(msg.contains(&victim) && msg.contains("model-00001-of-00002.safetensors") && msg.contains("[7]"), "{msg}");
}

#[test]
fn missing_tensor_is_named() {
    let (_tmp, dir) = copy_base();
    let mut victim = String::new();
    edit_shard(&dir, |t| {
        victim = t.keys().min().unwrap().clone();
        t.remove(&victim);
    });
    let err = load(&dir).unwrap_err();
    assert!(matches!(err, Error::MissingTensor { .. }), "{err}");
    // Names use the module layout of fact sheet §1.1 (model.layers → language_model.layers).
    let tail = victim.rsplit_once("layers").map_or(victim.as_str(), |(_, t)| t);
    assert!(err.to_string().contains(tail), "{err}");
}

#[test]
fn unknown_model_type_is_refused() {
    let (_tmp, dir) = copy_base();
    let cfg = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("\"qwen2_5_vl\"", "\"llama\"");
    std::fs::write(&cfg, text).unwrap();
    let err = load(&dir).unwrap_err();
    assert!(matches!(err, Error::UnsupportedModelType { ref model_type, .. } if model_type == "llama"), "{err}");
    let message = err.to_string();
    for family in ["ColQwen2.5", "ColQwen3", "qwen2_5_vl", "qwen3_vl"] {
        assert!(message.contains(family), "the error lists the supported families: {message}");
    }
    assert!(colqwen_core::Hint::hint(&err).is_some_and(|h| h.contains("ColQwen3")), "{err:?}");
}

#[test]
fn offline_and_not_cached_says_so() {
    let cache = tempfile::tempdir().unwrap();
    let opts = HubOptions { offline: true, cache_dir: Some(cache.path().into()), ..Default::default() };
    let err = ModelFiles::resolve("vidore/colqwen2.5-v0.2", None, &opts).unwrap_err();
    assert!(matches!(err, Error::NotCached { .. }), "{err}");
    assert!(err.to_string().contains("vidore/colqwen2.5-v0.2"), "{err}");
}

#[test]
fn adapter_resolves_its_sibling_base() {
    let files = ModelFiles::resolve(colqwen_testkit::tiny_adapter().to_str().unwrap(), None, &offline()).unwrap();
    assert!(files.adapter.is_some());
    assert!(files.config.starts_with(tiny_base().canonicalize().unwrap()) || files.config.starts_with(tiny_base()));
    assert_eq!(files.weights.len(), 2, "two shards listed by model.safetensors.index.json");
}
