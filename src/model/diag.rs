//! Located problems in input files, printed the way `rustc` and `just` print them.

use std::fmt;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, at one place in one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Path relative to the repository root, with `/` separators.
    pub file: String,
    pub line: u64,
    pub column: u64,
    #[serde(serialize_with = "serialize_bounded")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The source line the problem is on, for display.
    #[serde(skip)]
    pub snippet: Option<String>,
}

/// Messages quote values from the input; beyond this many characters they are cut. Long
/// enough for kairo's own lists of names.
const MAX_MESSAGE: usize = 2000;
/// Lines of other tools' error texts, and how many of them are shown.
const MAX_FOREIGN_LINE: usize = 400;
const MAX_FOREIGN_LINES: usize = 20;
/// Source lines are shown in a window of this many characters around the column.
const SNIPPET_WIDTH: usize = 100;

fn serialize_bounded<S: serde::Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&bounded(text, MAX_MESSAGE))
}

/// One character as a terminal may safely show it: control characters (escape sequences,
/// bell, carriage return, tab) are written as `\u{1b}`-style escapes.
fn push_safe(out: &mut String, c: char) {
    if c.is_control() {
        out.push_str(&format!("\\u{{{:x}}}", c as u32));
    } else {
        out.push(c);
    }
}

/// `text` with control characters escaped (newlines too: the result is one line), cut after
/// `max` characters with a note saying how much was left out.
pub fn bounded(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == max {
            let rest = text.chars().count() - max;
            out.push_str(&format!("… ({rest} more characters)"));
            break;
        }
        push_safe(&mut out, c);
    }
    out
}

/// A multi-line error text for a terminal: each line `bounded`, a limited number of lines.
/// Messages of other tools (the Rego parser) quote their input; a hostile file must not flood
/// the log.
pub fn bounded_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = (lines.iter().take(MAX_FOREIGN_LINES))
        .map(|l| bounded(l, MAX_FOREIGN_LINE))
        .collect();
    if lines.len() > MAX_FOREIGN_LINES {
        out.push(format!(
            "… ({} more lines)",
            lines.len() - MAX_FOREIGN_LINES
        ));
    }
    out.join("\n")
}

/// At most `SNIPPET_WIDTH` characters of `line` around the 1-based `column`, escaped; and the
/// caret's offset (in characters) in the result.
fn window(line: &str, column: u64) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    let at = (column.saturating_sub(1) as usize).min(chars.len());
    // Short lines are shown whole; long ones from a little before the column.
    let start = at
        .saturating_sub(SNIPPET_WIDTH / 3)
        .min(chars.len().saturating_sub(SNIPPET_WIDTH));
    let end = (start + SNIPPET_WIDTH).min(chars.len());
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut caret = out.chars().count();
    for (i, c) in chars[start..end].iter().enumerate() {
        if start + i == at {
            caret = out.chars().count();
        }
        push_safe(&mut out, *c);
    }
    if at >= end {
        caret = out.chars().count();
    }
    if end < chars.len() {
        out.push('…');
    }
    (out, caret)
}

impl Diagnostic {
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A file being loaded, which knows how to make located diagnostics.
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// A 1-based position in a source file; line 0 means the whole file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl From<serde_saphyr::Location> for Pos {
    fn from(loc: serde_saphyr::Location) -> Self {
        Pos {
            line: loc.line(),
            column: loc.column(),
        }
    }
}

impl SourceFile {
    pub fn diag(&self, severity: Severity, pos: Pos, message: impl Into<String>) -> Diagnostic {
        let snippet = (pos.line > 0)
            .then(|| self.text.lines().nth(pos.line as usize - 1))
            .flatten()
            .map(str::to_string);
        Diagnostic {
            severity,
            file: self.path.clone(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            hint: None,
            snippet,
        }
    }

    pub fn error(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        self.diag(Severity::Error, pos, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{label}: {}", bounded(&self.message, MAX_MESSAGE))?;
        if self.line == 0 {
            writeln!(f, "  --> {}", bounded(&self.file, MAX_MESSAGE))?;
        } else {
            writeln!(
                f,
                "  --> {}:{}:{}",
                bounded(&self.file, MAX_MESSAGE),
                self.line,
                self.column
            )?;
        }
        if let Some(snippet) = &self.snippet {
            let number = self.line.to_string();
            let pad = " ".repeat(number.len());
            let (text, caret) = window(snippet, self.column);
            writeln!(f, "{pad} |")?;
            writeln!(f, "{number} | {text}")?;
            writeln!(f, "{pad} | {}^", " ".repeat(caret))?;
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "  = hint: {}", bounded(hint, MAX_MESSAGE))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_windowed_around_the_column() {
        let line = format!("{}X{}", "a".repeat(1000), "b".repeat(1000));
        let (text, caret) = window(&line, 1001);
        assert!(text.chars().count() <= SNIPPET_WIDTH + 2, "{text}");
        assert_eq!(text.chars().nth(caret), Some('X'));
        let (text, caret) = window("\tkey: v", 2);
        assert_eq!((text.as_str(), caret), ("\\u{9}key: v", 5));
        assert_eq!(window("ab", 9), ("ab".to_string(), 2));
    }

    #[test]
    fn messages_are_bounded_and_escaped() {
        assert_eq!(bounded("a\u{1b}[2Jb", 10), "a\\u{1b}[2Jb");
        assert_eq!(bounded("abcdef", 3), "abc… (3 more characters)");
    }
}
