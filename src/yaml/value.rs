//! A rendered object as a value (a policy's `input`), built from the parser's events.
//!
//! Reading an object through serde (`from_str`) costs more than twice the parse itself, and
//! every object of a cold `kairo check` is read. The [`Builder`] here builds the value directly
//! for what rendered objects are made of (block and flow mappings and sequences, quoted and
//! plain scalars), from the same events `check_object` walks, so the render's output check and
//! the value are one parse. Everything else (anchors, aliases, tags, merge keys, several
//! documents, duplicate keys, a syntax error) is left to `from_str`, so the result and every
//! error are exactly what that reader gives. Plain scalars take their type from the same reader
//! too: a scalar that could be anything but text is resolved by it, one scalar at a time,
//! unless it is a plain decimal integer.
//!
//! This module only reads the text it is given.

use std::collections::BTreeMap;

use regorus::Value;
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

use super::YamlError;

/// `text` as a value: what `from_str` reads, or its error.
pub fn object_value(text: &str) -> Result<Value, YamlError> {
    match walk(text) {
        Some(value) => Ok(value),
        None => super::from_str(text),
    }
}

enum Frame {
    Map {
        map: BTreeMap<Value, Value>,
        key: Option<Value>,
    },
    Seq(Vec<Value>),
}

/// Builds the value of one plain document from its parser events; gives up on anything else.
#[derive(Default)]
pub struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    documents: usize,
}

impl Builder {
    /// Takes the next event; `None` when the value cannot be built this way.
    pub fn event(&mut self, event: &Event) -> Option<()> {
        let done = match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                return (self.documents == 1).then_some(());
            }
            Event::MappingStart(_, 0, None) => {
                self.stack.push(Frame::Map {
                    map: BTreeMap::new(),
                    key: None,
                });
                return Some(());
            }
            Event::SequenceStart(_, 0, None) => {
                self.stack.push(Frame::Seq(Vec::new()));
                return Some(());
            }
            Event::MappingEnd => match self.stack.pop()? {
                Frame::Map { map, key: None } => Value::from(map),
                _ => return None,
            },
            Event::SequenceEnd => match self.stack.pop()? {
                Frame::Seq(items) => Value::from(items),
                Frame::Map { .. } => return None,
            },
            Event::Scalar(text, style, 0, None) => {
                let is_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                if is_key && *style == ScalarStyle::Plain && text == "<<" {
                    return None;
                }
                scalar(text, *style)?
            }
            // Anchors, aliases, tags: the serde reader knows their rules.
            Event::Alias(..)
            | Event::Anchor(..)
            | Event::UnresolvedAlias(..)
            | Event::MappingStart(..)
            | Event::SequenceStart(..)
            | Event::Scalar(..) => return None,
            // Stream and document ends; comments, when the parser is built to report them.
            _ => return Some(()),
        };
        match self.stack.last_mut() {
            None => {
                if self.root.replace(done).is_some() {
                    return None;
                }
            }
            Some(Frame::Seq(items)) => items.push(done),
            Some(Frame::Map { map, key }) => match key.take() {
                None => *key = Some(done),
                Some(k) => {
                    if map.insert(k, done).is_some() {
                        return None;
                    }
                }
            },
        }
        Some(())
    }

    /// The value, once every event was taken.
    pub fn finish(self) -> Option<Value> {
        if self.stack.is_empty() {
            self.root
        } else {
            None
        }
    }
}

/// The value of `text` when it is one plain document the builder can build; `None` otherwise.
fn walk(text: &str) -> Option<Value> {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        builder.event(&event.ok()?.0)?;
    }
    builder.finish()
}

/// A scalar's value. Quoted and block scalars are text; a plain one is text unless it spells a
/// null, a boolean or a number. The reader's null and (strict) boolean spellings are few and
/// exact; a plain decimal integer is typed here, and any other number-like spelling is left to
/// the reader itself.
fn scalar(text: &str, style: ScalarStyle) -> Option<Value> {
    if style != ScalarStyle::Plain {
        return Some(Value::String(text.into()));
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        _ => {}
    }
    if let Some(n) = decimal(text) {
        return Some(n);
    }
    if !could_be_number(text) {
        return Some(Value::String(text.into()));
    }
    // `k: <scalar>` reads the scalar in the block context it may have come from; a scalar of
    // a flow collection is valid there too, as flow scalars are the stricter kind.
    let doc: Value = super::from_str(&format!("k: {text}\n")).ok()?;
    match &doc {
        Value::Object(map) if map.len() == 1 => map.get(&Value::from("k")).cloned(),
        _ => None,
    }
}

/// Whether a plain scalar might be read as a number: a radix prefix (`0x`, `0o`, `0b`), an
/// infinity or not-a-number word, or only digits, `_`, `.`, `:` (sexagesimal), signs and at
/// most one exponent letter. Anything else (`1589ee9`, `500m`, `v1.2`) is text.
fn could_be_number(text: &str) -> bool {
    let t = text.strip_prefix(['+', '-']).unwrap_or(text);
    let words = ["inf", "infinity", "nan", ".inf", ".nan"];
    if words.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        return true;
    }
    if let [b'0', b'x' | b'X' | b'o' | b'O' | b'b' | b'B', ..] = t.as_bytes() {
        return true;
    }
    let mut exponents = 0;
    t.bytes().all(|b| match b {
        b'0'..=b'9' | b'_' | b'.' | b':' | b'+' | b'-' => true,
        b'e' | b'E' => {
            exponents += 1;
            exponents == 1
        }
        _ => false,
    })
}

/// A plain decimal integer without a sign or leading zeros (`-` allowed), as the reader types
/// it (unsigned, or signed when negative); `None` for anything else, overflow included.
fn decimal(text: &str) -> Option<Value> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !plain {
        return None;
    }
    if text.starts_with('-') {
        text.parse::<i64>().ok().map(Value::from)
    } else {
        text.parse::<u64>().ok().map(Value::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(text: &str) -> (Result<Value, String>, Result<Value, String>) {
        let fast = object_value(text).map_err(|e| format!("{e:?}"));
        let slow = crate::yaml::from_str::<Value>(text).map_err(|e| format!("{e:?}"));
        // The render's check builds the same value in its own parse, when it builds one.
        if let Ok((_, Some(checked))) = crate::yaml::read_object(text, true) {
            assert_eq!(Ok(&checked), slow.as_ref(), "read_object of {text:?}");
        }
        (fast, slow)
    }

    #[test]
    fn every_scalar_spelling_reads_as_the_serde_reader_reads_it() {
        let scalars = [
            "",
            "~",
            "null",
            "Null",
            "NULL",
            "true",
            "True",
            "TRUE",
            "false",
            "FALSE",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "0",
            "-0",
            "1",
            "-1",
            "007",
            "+1",
            "1.0",
            "-1.5",
            ".5",
            "1e3",
            "1E-3",
            "5e57483",
            "0x1F",
            "0o17",
            "0b101",
            "1_000",
            "1:30",
            ".inf",
            "-.Inf",
            ".NaN",
            "inf",
            "nan",
            "infinity",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "500m",
            "256Mi",
            "2Gi",
            "latest",
            "feature",
            "3f9c2e1",
            "abc123",
            "a b",
            "nvidia.com/gpu",
            "ghcr.io/kai/api",
            "x:y",
            "-",
            "--x",
            "1.2.3",
            "v1.2.3",
            "1-2",
            "~x",
            "e",
            "e1",
            "0.",
            "00",
            "-00",
            "1__0",
            "0x",
            "+",
            "+.inf",
            ".",
            "..",
            "1589ee9",
            "1589e9",
            "1E+3",
            "+0x1F",
            "-0o7",
            "0B1",
            "Infinity",
            "-INF",
            "NaN",
            "1.5e-3",
            "1,5",
            "0xZZ",
            "12:30:45",
            "1e",
            "e",
            "E5",
            "_1",
            "1_",
            ".e",
            "yes",
            "Off",
            "N",
        ];
        for s in scalars {
            for doc in [
                format!("a: {s}\n"),
                format!("a: [{s}]\n"),
                format!("a:\n  - {s}\n  - '{s}'\n"),
                format!("{s}: 1\nb: \"{s}\"\n"),
                format!("a: {{k: {s}}}\n"),
            ] {
                let (fast, slow) = both(&doc);
                assert_eq!(fast, slow, "document {doc:?}");
            }
        }
    }

    #[test]
    fn what_the_walk_leaves_to_the_serde_reader_reads_the_same() {
        let docs = [
            "a: &x {b: 1}\nc: *x\n",
            "base: &b {x: 1}\nd:\n  <<: *b\n  y: 2\n",
            "a: !!str 1\nb: !!int \"2\"\n",
            "a: 1\na: 2\n",
            "a: 1\n---\nb: 2\n",
            "- 1\n- 2\n",
            "plain\n",
            "",
            "a: [1, 2\n",
            "a: |\n  text\n  more\nb: >\n  folded\n  line\n",
            "a:\n  b:\n    c: [1, {d: e}]\n# a comment\nf: g # another\n",
            "a: multi\n  line plain\n\n  with a blank\n",
            "? complex\n: value\n",
            "{a: 1, b: [x, y]}\n",
        ];
        for doc in docs {
            let (fast, slow) = both(doc);
            assert_eq!(fast, slow, "document {doc:?}");
        }
    }

    #[test]
    fn rendered_objects_read_the_same_both_ways() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clusters");
        let mut seen = 0;
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            let entry = entry.expect("readable clusters/");
            if entry.path().extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(entry.path()).expect("text");
                let (fast, slow) = both(&text);
                assert_eq!(fast, slow, "{}", entry.path().display());
                assert!(
                    walk(&text).is_some(),
                    "{} takes the fast way",
                    entry.path().display()
                );
                assert!(
                    matches!(crate::yaml::read_object(&text, true), Ok((_, Some(_)))),
                    "{}: the render's check builds the value",
                    entry.path().display()
                );
                seen += 1;
            }
        }
        assert!(seen > 10, "the repository's own clusters/ holds objects");
    }
}
