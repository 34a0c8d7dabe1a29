//! Every environment variable colqwen reads, in one place (STYLE §6.3). Flags with an `env = ...` in
//! `args.rs` are read by clap: COLQWEN_INDEX, COLQWEN_MODEL, COLQWEN_OFFLINE, COLQWEN_PDF_PASSWORD.

/// Hide progress bars (tests, CI logs).
pub fn no_progress() -> bool {
    std::env::var_os("COLQWEN_NO_PROGRESS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `HF_HUB_OFFLINE=1`, the Hugging Face convention for "never download".
pub fn hf_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// `HF_TOKEN` for gated or private repositories.
pub fn hf_token() -> Option<String> {
    std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty())
}

/// `COLQWEN_API_KEY`: the key a CLI command sends to a running server (the server reads it through clap).
pub fn api_key() -> Option<String> {
    std::env::var("COLQWEN_API_KEY").ok().filter(|t| !t.is_empty())
}
