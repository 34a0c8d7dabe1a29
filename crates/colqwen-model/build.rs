//! With the `cuda` feature, compiles `kernels/colqwen.cu` to PTX with the toolkit's nvcc (found by cudaforge:
//! `CUDA_HOME`/`CUDA_ROOT`/`PATH`; architecture from `CUDA_COMPUTE_CAP` or nvidia-smi; see
//! scripts/cuda-build.sh). Without it there is nothing to build: the generic candle path serves CPU and Metal.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=kernels");
    #[cfg(feature = "cuda")]
    cuda();
}

#[cfg(feature = "cuda")]
fn cuda() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let ptx = cudaforge::KernelBuilder::new()
        .source_files(["kernels/colqwen.cu"])
        .arg("-std=c++17")
        .arg("-O3")
        .build_ptx()
        .unwrap_or_else(|e| panic!("compiling kernels/colqwen.cu with nvcc: {e}"));
    ptx.write(out.join("ptx.rs")).unwrap_or_else(|e| panic!("writing ptx.rs: {e}"));
}
