//! `colqwen`: the binary is thin. It parses flags, resolves settings, calls the library, prints results
//! (stdout) and errors with hints (stderr), and maps outcomes to exit codes: 0 ok (a broken pipe too),
//! 1 user-fixable (bad PDF, missing index, device not built in, …), 2 unexpected.
#![allow(clippy::print_stdout, clippy::print_stderr, unreachable_pub)]

mod args;
mod commands;
mod env;
mod logging;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.global.verbose, cli.global.quiet);
    // Renderer panics are contained per page and reported in the summary; log them instead of letting the
    // default hook print a raw message in the middle of the progress bars.
    std::panic::set_hook(Box::new(|info| tracing::error!("panic: {info}")));
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

/// `error: …` with the cause chain, then `hint:` lines; exit 1 for user-fixable problems, 2 otherwise.
fn report(e: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(e) {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {e:#}");
    for hint in hints(e) {
        eprintln!("hint: {hint}");
    }
    if user_fixable(e) { ExitCode::from(1) } else { ExitCode::from(2) }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Hints for our own error types, found anywhere in the chain.
pub(crate) fn hints(e: &anyhow::Error) -> Vec<String> {
    e.chain().filter_map(hint_for_error).collect()
}

pub(crate) fn hint_for_error(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    use colqwen::model::Error as M;
    use colqwen::pdf::Error as P;
    use colqwen::store::Error as S;
    if let Some(e) = cause.downcast_ref::<colqwen::Error>() {
        return match e {
            // `#[error(transparent)]` wrappers hide the inner error from the source chain: look inside.
            colqwen::Error::Pdf(inner) => hint_for_error(inner),
            colqwen::Error::Model(inner) => hint_for_error(inner),
            colqwen::Error::Store(inner) => hint_for_error(inner),
            colqwen::Error::DeviceUnavailable { requested, .. } if requested.starts_with("cuda") => {
                Some("rebuild with `--features cuda` (scripts/cuda-build.sh), or pass --device cpu".into())
            }
            colqwen::Error::DeviceUnavailable { .. } => {
                Some("rebuild with `--features metal`, or pass --device cpu".into())
            }
            colqwen::Error::NoSuchDocument(_) => Some("`colqwen list` shows the documents and their ids".into()),
            colqwen::Error::ModelMismatch { .. } => {
                Some("omit --model to use the index's model, or pass --index for another index".into())
            }
            colqwen::Error::EmbedBatch { .. } => Some("try a smaller --batch-size".into()),
            _ => None,
        };
    }
    if let Some(e) = cause.downcast_ref::<M>() {
        return match e {
            M::NotCached { .. } => {
                Some("run once with network access to download the model, or pass --model with a local folder".into())
            }
            M::Hub { .. } => Some("check the network and the model id; gated models need HF_TOKEN".into()),
            M::MissingFile { .. } | M::Safetensors { .. } | M::ShapeMismatch { .. } | M::MissingTensor { .. } => {
                Some("the model folder is incomplete or damaged: download it again".into())
            }
            M::UnsupportedModelType { .. } => {
                Some("colqwen runs ColQwen2.5 checkpoints (e.g. vidore/colqwen2.5-v0.2)".into())
            }
            _ => None,
        };
    }
    if let Some(e) = cause.downcast_ref::<P>() {
        return match e {
            P::PasswordRequired { .. } => Some("pass the password with --password".into()),
            P::WrongPassword { .. } => Some("check the --password value".into()),
            P::Empty { .. } | P::NotPdf { .. } | P::Damaged { .. } => {
                Some("re-download or re-export the file; other files are not affected".into())
            }
            P::RenderTimeout { .. } => Some("raise --page-timeout if the page is just slow".into()),
            _ => None,
        };
    }
    if let Some(e) = cause.downcast_ref::<S>() {
        return match e {
            S::InUse { .. } => {
                Some("another colqwen process is using this index: wait for it, or pass --index DIR".into())
            }
            S::NotFound { .. } => Some("run `colqwen ingest FILE.pdf` first, or pass --index DIR".into()),
            S::ManifestMismatch { .. } => {
                Some("use the model the index was built with (omit --model), or pass --index for a new index".into())
            }
            _ => None,
        };
    }
    None
}

/// Problems the user can fix (exit 1); anything else is a bug or an environment failure (exit 2).
fn user_fixable(e: &anyhow::Error) -> bool {
    e.chain().any(fixable)
}

fn fixable(cause: &(dyn std::error::Error + 'static)) -> bool {
    use colqwen::store::Error as S;
    if let Some(e) = cause.downcast_ref::<colqwen::Error>() {
        return match e {
            colqwen::Error::Pdf(inner) => fixable(inner),
            colqwen::Error::Model(inner) => fixable(inner),
            colqwen::Error::Store(inner) => fixable(inner),
            _ => true,
        };
    }
    cause.downcast_ref::<colqwen::pdf::Error>().is_some()
        || cause
            .downcast_ref::<S>()
            .is_some_and(|s| matches!(s, S::InUse { .. } | S::NotFound { .. } | S::ManifestMismatch { .. }))
        || cause.downcast_ref::<colqwen::model::Error>().is_some_and(|m| !matches!(m, colqwen::model::Error::Tensor(_)))
        || cause.downcast_ref::<commands::UsageError>().is_some()
}

/// One line for a failed document or page: path, page number, error chain.
pub(crate) fn describe_failure(f: &colqwen::Failure) -> String {
    let mut msg = match f.page_index {
        Some(p) => format!("{} page {}: ", f.path.display(), p + 1),
        None => format!("{}: ", f.path.display()),
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&f.error);
    let mut first = true;
    while let Some(e) = source {
        if !first {
            msg.push_str(": ");
        }
        msg.push_str(&e.to_string());
        first = false;
        source = e.source();
    }
    msg
}
