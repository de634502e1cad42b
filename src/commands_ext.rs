//! The bodies of `kairo init` and `kairo explain`: arguments in, domain call, output.
//! Kept apart from `commands.rs` so that each command's printing lives next to its arguments.

use std::io::Write;
use std::path::Path;

use crate::Outcome;
use crate::cli::{ExplainArgs, ExplainFormat, InitArgs};
use crate::explain::{self, ExplainError};
use crate::init::{self, InitError};

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
            let mut out = std::io::stdout().lock();
            for f in &files {
                let _ = writeln!(out, "created  {f}");
            }
            eprintln!(
                "initialized a kairo repository in `{}`\n  hint: edit environments/, then run `kairo render` and `kairo check`; commit everything and point Flux at clusters/<env>",
                dir.display()
            );
            Outcome::Clean
        }
        Err(e @ InitError::Exists { .. }) => {
            eprintln!(
                "error: {e}; nothing was written\n  hint: run `kairo init` in an empty directory, or pass `--dir DIR`"
            );
            Outcome::Failed
        }
        Err(e) => {
            let mut text = format!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!("\n  caused by: {cause}"));
                source = cause.source();
            }
            eprintln!("{text}");
            Outcome::Failed
        }
    }
}

pub fn explain_command(root: &Path, args: &ExplainArgs) -> Outcome {
    match explain::explain(root, &args.service, &args.env) {
        Ok(e) => {
            let mut out = std::io::stdout().lock();
            match args.output {
                ExplainFormat::Yaml => {
                    let _ = out.write_all(explain::to_yaml(&e).as_bytes());
                }
                ExplainFormat::Json => {
                    let _ = serde_json::to_writer_pretty(&mut out, &e);
                    let _ = writeln!(out);
                }
            }
            Outcome::Clean
        }
        Err(ExplainError::Model(diags)) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!("error: the environment files have problems");
            Outcome::Failed
        }
        Err(ExplainError::UnknownEnvironment { name, known }) => {
            eprintln!(
                "error: unknown environment `{name}`\n  hint: environments: {}",
                backticked(&known)
            );
            Outcome::Failed
        }
        Err(ExplainError::UnknownRelease {
            name,
            environment,
            known,
        }) => {
            eprintln!(
                "error: `{name}` does not run in environment `{environment}`\n  hint: releases there: {}",
                backticked(&known)
            );
            Outcome::Failed
        }
        Err(e) => {
            let mut text = format!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!("\n  caused by: {cause}"));
                source = cause.source();
            }
            eprintln!("{text}");
            Outcome::Failed
        }
    }
}
