//! The bodies of `kairo init` and `kairo explain`: arguments in, domain call, output.
//! Kept apart from `commands.rs` so that each command's printing lives next to its arguments.

use std::path::Path;

use crate::Outcome;
use crate::cli::{ExplainArgs, ExplainFormat, InitArgs};
use crate::explain::{self, ExplainError};
use crate::init::{self, InitError};
use crate::output;

/// Reports `err` with its causes and an optional hint; the command fails.
fn failed(err: &dyn std::error::Error, hint: Option<String>) -> Outcome {
    let mut text = format!(
        "{}: {}",
        output::error_prefix(),
        output::with_causes(err, "\n  caused by: ")
    );
    if let Some(hint) = hint {
        text.push_str(&format!("\n  hint: {hint}"));
    }
    output::message(&text);
    Outcome::Failed
}

fn backticked(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn init_command(root: &Path, args: &InitArgs) -> Outcome {
    let dir = args.dir.as_deref().unwrap_or(root);
    match init::init(dir, args.templates) {
        Ok(files) => {
            let listing: String = files.iter().map(|f| format!("created  {f}\n")).collect();
            if let Err(outcome) = output::data(&listing) {
                return outcome;
            }
            output::message(&format!(
                "initialized a kairo repository in `{}`\n  hint: edit environments/, then run `kairo render` and `kairo check`; commit everything and point Flux at clusters/<env>",
                dir.display()
            ));
            Outcome::Clean
        }
        Err(e @ InitError::Exists { .. }) => {
            output::message(&format!(
                "{}: {e}; nothing was written\n  hint: run `kairo init` in an empty directory, or pass `--dir DIR`",
                output::error_prefix()
            ));
            Outcome::Failed
        }
        Err(e) => failed(&e, None),
    }
}

pub fn explain_command(root: &Path, args: &ExplainArgs) -> Outcome {
    match &explain::explain(root, &args.service, &args.env) {
        Ok(e) => {
            let written = match args.output {
                ExplainFormat::Yaml => output::data(&explain::to_yaml(e)),
                ExplainFormat::Json => output::json(e),
            };
            written.err().unwrap_or(Outcome::Clean)
        }
        Err(ExplainError::Model(diags)) => {
            for d in diags {
                output::message(&format!("{d}\n"));
            }
            output::message(&format!(
                "{}: the environment files have problems",
                output::error_prefix()
            ));
            Outcome::Failed
        }
        Err(e @ ExplainError::UnknownEnvironment { known, .. }) => {
            failed(e, Some(format!("environments: {}", backticked(known))))
        }
        Err(e @ ExplainError::UnknownRelease { known, .. }) => {
            failed(e, Some(format!("releases there: {}", backticked(known))))
        }
        Err(e) => failed(e, None),
    }
}
