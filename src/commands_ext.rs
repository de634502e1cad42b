//! The bodies of `kairo init` and `kairo explain`: arguments in, domain call, output.
//! Kept apart from `commands.rs` so that each command's printing lives next to its arguments.

use std::path::Path;

use crate::Outcome;
use crate::cli::{ExplainArgs, ExplainFormat, InitArgs};
use crate::explain::{self, ExplainError};
use crate::init::{self, InitError};
use crate::output;

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
            output::error(
                &format!("{e}; nothing was written"),
                Some("run `kairo init` in an empty directory, or pass `--dir DIR`"),
            );
            Outcome::Failed
        }
        Err(e) => crate::commands::fail(&e, None),
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
            output::error("the environment files have problems", None);
            Outcome::Failed
        }
        Err(e @ ExplainError::UnknownEnvironment { known, .. }) => {
            crate::commands::fail(e, Some(&format!("environments: {}", backticked(known))))
        }
        Err(e @ ExplainError::UnknownRelease { known, .. }) => {
            crate::commands::fail(e, Some(&format!("releases there: {}", backticked(known))))
        }
        Err(e) => crate::commands::fail(e, None),
    }
}
