//! `colqwen`: the binary is thin. It parses flags, resolves settings, calls the library, prints results
//! (stdout) and errors with hints (stderr), and maps outcomes to exit codes: 0 ok (a broken pipe too),
//! 1 user-fixable (a flag clap refuses, bad PDF, missing index, device not built in, …), 2 unexpected,
//! 130 / 143 an ingest stopped by Ctrl-C / SIGTERM (what was done is stored).
#![allow(clippy::print_stdout, clippy::print_stderr, unreachable_pub)]

mod args;
mod commands;
mod env;
mod logging;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;

/// The hint of an error that carries none of its own.
pub const FALLBACK_HINT: &str =
    "this was not expected: run the command again with -v for details, and report it if it happens again";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    logging::init(cli.global.verbose, cli.global.quiet);
    // Renderer panics are contained per page and reported in the summary; log them instead of letting the
    // default hook print a raw message in the middle of the progress bars.
    std::panic::set_hook(Box::new(|info| tracing::error!("panic: {info}")));
    // `error: …` lines carry no colour codes: they are read in logs and pipes as often as on terminals.
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

/// What clap refuses (an unknown flag, a value out of range, a missing argument) is the user's to fix: clap's
/// message and usage, then a `hint:`, exit 1 (clap's own exit code, 2, is this binary's "unexpected").
/// `--help` and `--version` print and exit 0.
fn usage(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    // clap ends with "For more information, try '--help'.": the hint says it, naming the subcommand.
    let body = text.trim_end().trim_end_matches("For more information, try '--help'.").trim_end();
    let command = <Cli as clap::CommandFactory>::command();
    let sub = std::env::args().skip(1).find(|a| command.get_subcommands().any(|c| c.get_name() == a));
    eprintln!("{body}");
    match sub {
        Some(sub) => eprintln!("hint: `colqwen {sub} --help` lists its flags and their allowed values"),
        None => eprintln!("hint: `colqwen --help` lists the commands and the global flags"),
    }
    ExitCode::from(1)
}

/// `error: …` with the cause chain, then `hint:` lines (at least one); exit 1 for user-fixable problems, 2
/// otherwise.
fn report(e: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(e) {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {}", commands::shown(&chain(e)));
    let mut hints = hints(e);
    if hints.is_empty() {
        hints.push(FALLBACK_HINT.to_string());
    }
    for hint in hints {
        eprintln!("hint: {}", commands::shown(&hint));
    }
    if user_fixable(e) { ExitCode::from(1) } else { ExitCode::from(2) }
}

/// The error and its causes, each once (transparent wrappers repeat their source's text).
fn chain(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for c in e.chain() {
        let text = c.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// The hints along the chain: the library's errors carry their own (`colqwen::Error::hint`), usage errors
/// theirs.
fn hints(e: &anyhow::Error) -> Vec<String> {
    let mut hints: Vec<String> = e
        .chain()
        .filter_map(|c| {
            c.downcast_ref::<colqwen::Error>()
                .and_then(colqwen::Error::hint)
                .or_else(|| c.downcast_ref::<commands::UsageError>().map(|u| u.hint().to_string()))
                .or_else(|| c.downcast_ref::<commands::RemoteError>().and_then(|r| r.hint.clone()))
        })
        .collect();
    hints.dedup();
    hints
}

/// Problems the user can fix (exit 1); anything else is a bug or an environment failure (exit 2).
fn user_fixable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<colqwen::Error>().is_some_and(colqwen::Error::user_fixable)
            || c.downcast_ref::<commands::UsageError>().is_some()
            || c.downcast_ref::<colqwen_server::ServeError>().is_some()
            || c.downcast_ref::<commands::RemoteError>().is_some_and(commands::RemoteError::user_fixable)
    })
}
