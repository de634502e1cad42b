//! The one door to the console: data on stdout, messages for people on stderr.
//!
//! Colour goes through `anstream`, which strips styles when the stream is not a terminal, when
//! `NO_COLOR` is set, or with `--color never` (`--color always` keeps them). A closed stdout
//! (`kairo diff | head`) ends output quietly; any other write error on stdout (a full disk) is
//! an error, exit 2, because the data the caller asked for was not delivered.

use std::io::Write;

use crate::Outcome;
use crate::cli::ColorChoice;

/// Sets the colour choice for the whole process (once, before any output).
pub fn init(choice: ColorChoice) {
    let c = match choice {
        ColorChoice::Auto => anstream::ColorChoice::Auto,
        ColorChoice::Always => anstream::ColorChoice::Always,
        ColorChoice::Never => anstream::ColorChoice::Never,
    };
    c.write_global();
}

/// Whether styled text written to stderr keeps its styles: log lines follow it too.
pub fn stderr_colored() -> bool {
    anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
}

/// Whether styled text written to stdout keeps its styles.
pub fn stdout_colored() -> bool {
    anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
}

/// Writes data to stdout. `Err(outcome)` when the command must end with that outcome.
pub fn data(text: &str) -> Result<(), Outcome> {
    let mut out = anstream::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            drop(out);
            message(&format!("error: cannot write to stdout: {e}"));
            Err(Outcome::Failed)
        }
    }
}

/// Writes a value as pretty JSON on stdout, then a newline.
pub fn json<T: serde::Serialize>(value: &T) -> Result<(), Outcome> {
    let mut text = serde_json::to_string_pretty(value).expect("reports serialize");
    text.push('\n');
    data(&text)
}

/// A message for people on stderr (errors, warnings, notes, progress). Failures to write
/// stderr are ignored: there is nowhere left to report them.
pub fn message(text: &str) {
    let mut err = anstream::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = err.write_all(b"\n");
    }
}

/// `err` followed by each of its causes, every one after `separator` (`"\n  caused by: "` for
/// people, `": "` for a log line).
pub fn with_causes(err: &dyn std::error::Error, separator: &str) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(separator);
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reports a failure for people: `error: message`, then the hint if any.
pub fn error(message: &str, hint: Option<&str>) {
    let mut text = format!("{}: {message}", error_prefix());
    if let Some(h) = hint {
        text.push_str(&format!("\n  hint: {h}"));
    }
    self::message(&text);
}

/// `error: ...` in bold red when colour is on.
pub fn error_prefix() -> String {
    let style = anstyle::Style::new()
        .bold()
        .fg_color(Some(anstyle::AnsiColor::Red.into()));
    format!("{style}error{style:#}")
}
