//! `ColQwen::set_profiling`: the stages of a forward pass report to the profiler set on the model, and only
//! while it is set.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use colqwen_model::profile::Profiler;
use colqwen_model::{ColQwen, DType, Device, HubOptions, LoadOptions, ModelFiles};
use colqwen_testkit::{golden_dir, manifest, tiny_adapter};

#[test]
fn stages_of_a_forward_pass_report_to_the_model_profiler() {
    let files = ModelFiles::resolve(
        tiny_adapter().to_str().unwrap(),
        None,
        &HubOptions { offline: true, ..Default::default() },
    )
    .unwrap();
    let m = ColQwen::load(&files, &Device::Cpu, DType::F32, &LoadOptions::default()).unwrap();
    let img = image::open(golden_dir().join(&manifest().images[0].file)).unwrap().to_rgb8();
    let plain = m.embed_images(std::slice::from_ref(&img)).unwrap();

    let profiler = Arc::new(Profiler::new());
    m.set_profiling(Some(profiler.clone()));
    let profiled = m.embed_images(std::slice::from_ref(&img)).unwrap();
    m.set_profiling(None);
    m.embed_queries(&["not profiled"]).unwrap();

    assert_eq!(plain[0].data, profiled[0].data, "profiling does not change the result");
    let report = profiler.report();
    let calls = |stage: &str| report.iter().find(|r| r.0 == stage).map_or(0, |r| r.2);
    let colqwen_model::ModelConfig::Qwen2_5(cfg) = m.config() else { panic!("a ColQwen2.5 fixture") };
    assert_eq!(calls("upload"), 1);
    assert_eq!(calls("download"), 1);
    assert_eq!(calls("vision.qkv"), cfg.vision.depth as u64);
    assert_eq!(calls("text.mlp_down"), cfg.text.num_hidden_layers as u64, "the query ran after profiling stopped");
    assert_eq!(calls("vision.add_norm"), 2 * cfg.vision.depth as u64);
    assert!(report.iter().all(|r| r.1 >= 0.0));
}
