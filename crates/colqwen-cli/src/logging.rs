//! Log setup, once: warnings by default, `-v` debug for our crates, `-vv` trace; `RUST_LOG` wins. Logs go
//! to stderr, results to stdout.

use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "warn,colqwen=debug,colqwen_model=debug,colqwen_store=debug,colqwen_pdf=debug,colqwen_weaviate=debug",
        _ => "warn,colqwen=trace,colqwen_model=trace,colqwen_store=trace,colqwen_pdf=trace,colqwen_weaviate=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour codes only on a terminal: logs and pipes get plain text (panic messages included).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}
