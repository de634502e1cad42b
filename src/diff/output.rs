//! Printing a diff `Report` as text (terminal), Markdown (PR comment) or JSON (machines).

use std::fmt::Write;

use anstyle::{AnsiColor, Style};
use serde_json::Value;

use super::{Change, FieldChange, ObjectDiff, Report};

/// GitHub refuses comments over 65,536 characters; leave room for a bot's own wrapper.
pub const MARKDOWN_LIMIT: usize = 60_000;

fn compact(v: &Option<Value>) -> String {
    match v {
        None => "(none)".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `spec.values.replicaCount 3 -> 4; spec.values.image.tag 1.4.2 -> 1.4.3`
pub fn field_summary(fields: &[FieldChange], arrow: &str) -> String {
    fields
        .iter()
        .map(|f| {
            format!(
                "{} {} {arrow} {}",
                f.path,
                compact(&f.before),
                compact(&f.after)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn summary(o: &ObjectDiff, arrow: &str) -> String {
    field_summary(&o.fields, arrow)
}

fn sign(change: Change) -> char {
    match change {
        Change::Added => '+',
        Change::Removed => '-',
        Change::Changed => '~',
    }
}

fn counts(r: &Report) -> (usize, usize, usize) {
    r.environments.iter().fold((0, 0, 0), |(a, c, d), e| {
        (a + e.added, c + e.changed, d + e.removed)
    })
}

/// Plain text; `color` adds ANSI colours (only when writing to a terminal).
pub fn render_text(r: &Report, summary_only: bool, color: bool) -> String {
    let paint = |style: Style, text: &str| -> String {
        if color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    };
    let green = Style::new().fg_color(Some(AnsiColor::Green.into()));
    let red = Style::new().fg_color(Some(AnsiColor::Red.into()));
    let cyan = Style::new().fg_color(Some(AnsiColor::Cyan.into()));
    let bold = Style::new().bold();
    let mut out = String::new();
    let (a, c, d) = counts(r);
    let _ = writeln!(
        out,
        "{}",
        paint(
            bold,
            &format!(
                "{} -> {}: {a} added, {c} changed, {d} removed",
                r.base, r.head
            )
        )
    );
    for env in &r.environments {
        let _ = writeln!(
            out,
            "\n{}",
            paint(
                bold,
                &format!(
                    "{}: {} added, {} changed, {} removed",
                    env.name, env.added, env.changed, env.removed
                )
            )
        );
        for o in &env.objects {
            let head = format!("{} {}/{} {}", sign(o.change), env.name, o.name, o.kind);
            let line = match o.change {
                Change::Changed => format!("{head}: {}", summary(o, "->")),
                _ => head,
            };
            let style = match o.change {
                Change::Added => green,
                Change::Removed => red,
                Change::Changed => Style::new(),
            };
            let _ = writeln!(out, "{}", paint(style, &line));
            if summary_only {
                continue;
            }
            for l in o.diff.lines() {
                let style = if l.starts_with("@@") {
                    cyan
                } else if l.starts_with('+') {
                    green
                } else if l.starts_with('-') {
                    red
                } else {
                    Style::new()
                };
                let _ = writeln!(out, "    {}", paint(style, l));
            }
        }
    }
    if !r.stale.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            paint(
                bold,
                &format!("{}: clusters/ is not what its environments render", r.head)
            )
        );
        for s in &r.stale {
            let _ = writeln!(out, "  {} {}", s.state, s.path);
        }
    }
    out
}

/// A PR comment: a summary table, then one collapsible block per object, within
/// [`MARKDOWN_LIMIT`] characters.
pub fn render_markdown(r: &Report, summary_only: bool) -> String {
    let mut out = String::new();
    let (a, c, d) = counts(r);
    let _ = writeln!(out, "### kairo diff: `{}` → `{}`\n", r.base, r.head);
    if !r.has_differences() {
        out.push_str("No changes to rendered objects.\n");
        return out;
    }
    out.push_str("| environment | added | changed | removed |\n|---|---:|---:|---:|\n");
    for env in &r.environments {
        let name = if env.name.starts_with("prod") {
            format!("**{}**", env.name)
        } else {
            env.name.clone()
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} |",
            env.added, env.changed, env.removed
        );
    }
    let _ = writeln!(out, "| total | {a} | {c} | {d} |");
    if !r.stale.is_empty() {
        let _ = writeln!(
            out,
            "\n> [!WARNING]\n> `clusters/` at `{}` is not what its environments render (run `kairo render` and commit):",
            r.head
        );
        for s in &r.stale {
            let _ = writeln!(out, "> - {} `{}`", s.state, s.path);
        }
    }
    let mut omitted = 0;
    for env in &r.environments {
        let _ = writeln!(out, "\n#### {}\n", env.name);
        for o in &env.objects {
            let title = match o.change {
                Change::Changed => format!("~ {} `{}`: {}", o.kind, o.name, summary(o, "→")),
                Change::Added => format!("+ {} `{}` added", o.kind, o.name),
                Change::Removed => format!("- {} `{}` removed", o.kind, o.name),
            };
            let block = if summary_only {
                format!("- {title}\n")
            } else {
                format!(
                    "<details><summary>{}</summary>\n\n```diff\n{}```\n\n</details>\n",
                    escape_html(&title),
                    o.diff.replace("```", "` ` `")
                )
            };
            // Keep room for the truncation note.
            if out.len() + block.len() > MARKDOWN_LIMIT - 200 {
                omitted += 1;
                continue;
            }
            out.push_str(&block);
        }
    }
    if omitted > 0 {
        let _ = writeln!(
            out,
            "\n_{omitted} more object(s) not shown to stay within the comment size limit; run `kairo diff --base {}` locally for everything._",
            r.base
        );
    }
    out
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn render_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("a report serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{EnvironmentDiff, ObjectDiff};

    #[test]
    fn markdown_stays_within_the_comment_limit() {
        let object = |i: usize| ObjectDiff {
            change: Change::Added,
            kind: "HelmRelease".into(),
            namespace: "ns".into(),
            name: format!("svc-{i}"),
            path: format!("clusters/prod/releases/svc-{i}.yaml"),
            fields: Vec::new(),
            diff: "+line\n".repeat(100),
        };
        let report = Report {
            base: "a".into(),
            head: "b".into(),
            environments: vec![EnvironmentDiff {
                name: "production".into(),
                added: 500,
                changed: 0,
                removed: 0,
                objects: (0..500).map(object).collect(),
            }],
            stale: Vec::new(),
        };
        let md = render_markdown(&report, false);
        assert!(md.len() <= MARKDOWN_LIMIT, "{}", md.len());
        assert!(md.contains("| **production** | 500 | 0 | 0 |"));
        assert!(md.contains("more object(s) not shown to stay within the comment size limit"));
        assert!(render_markdown(&report, true).len() < MARKDOWN_LIMIT);
    }
}
