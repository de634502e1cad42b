//! The one place kairo reads and writes YAML.
//!
//! Reading uses `serde-saphyr`: it reports line and column for every error, carries exact spans
//! through `Spanned<T>`, and rejects duplicate keys. `serde_yaml` is archived upstream, so it is
//! not used. Writing (inside templates, through the `yaml` filter) uses the same crate's
//! serializer, so quoting rules are consistent with how files are read back.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use serde_saphyr::Spanned;
pub use value::object_value;

mod value;

/// A YAML syntax or type error with its position (1-based; 0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: u64,
    pub column: u64,
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// For an unknown key: the key and the keys allowed at that place.
    pub unknown_key: Option<(String, Vec<&'static str>)>,
}

const SYNTAX_HINT: &str =
    "check the indentation (spaces, never tabs) and the quoting on this line and the one before it";

/// Hint for a value of the wrong type, from what serde expected.
fn type_hint(expected: &str) -> String {
    if expected.starts_with(NOT_A_BOOL) {
        "write `true` or `false` (lowercase, without quotes)".into()
    } else if expected.contains("sequence") || expected.contains("list") {
        "write a list: one `- item` line per entry, or `[a, b]`".into()
    } else if expected.contains("map") || expected.contains("struct") {
        "write a mapping: `key: value` lines indented below this key, or `{key: value}`".into()
    } else if expected.contains("number") || expected.contains("integer") {
        "write a number without quotes, such as `3`".into()
    } else if expected.contains("string") || expected.contains("quantity") {
        "write a single value (quote it if it contains `:`, `#`, `[` or `{`)".into()
    } else {
        format!("expected {expected} here")
    }
}

/// An unknown key and the keys allowed where it is.
type UnknownKey = Option<(String, Vec<&'static str>)>;

/// The crate's own message reworded for a person, with a hint.
fn describe(e: &serde_saphyr::Error, len: usize) -> (String, Option<String>, UnknownKey) {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let mut e = e;
    while let E::WithSnippet { error, .. } | E::AliasError { error, .. } = e {
        e = error;
    }
    let alias_limit = alias_limit(len);
    let alias_hint = || {
        Some(format!(
            "aliases (`*name`) and merge keys (`<<`) may replay at most {alias_limit} YAML events in one file, a guard against alias bombs; write the values out, or raise the limit with `{}` (or `KAIRO_YAML_ALIAS_LIMIT`)",
            crate::limits::YAML_ALIAS_FLAG
        ))
    };
    let plain = |m: String, h: &str| (m, Some(h.to_string()), None);
    match e {
        E::SerdeUnknownField {
            field, expected, ..
        } => (
            format!("unknown key `{field}`"),
            None,
            Some((field.clone(), expected.clone())),
        ),
        E::SerdeMissingField { field, .. } => plain(
            format!("missing key `{field}`"),
            &format!("add `{field}:` to this mapping"),
        ),
        E::DuplicateMappingKey { key, .. } => plain(
            match key {
                Some(k) => format!("duplicate key `{k}`"),
                None => "duplicate key".to_string(),
            },
            "a key may appear only once in a mapping",
        ),
        E::MultipleDocuments { .. } => plain(
            "more than one YAML document (`---`) in one file; each file holds one".to_string(),
            "split the documents into separate files",
        ),
        E::InvalidScalar { ty, .. } => {
            let (what, hint) = match *ty {
                "u8" | "u16" | "u32" | "u64" | "usize" => (
                    "a whole number that is not negative",
                    "write a number without quotes, such as `3`",
                ),
                "i8" | "i16" | "i32" | "i64" => (
                    "a whole number",
                    "write a number without quotes, such as `3`",
                ),
                "f32" | "f64" => ("a number", "write a number without quotes, such as `1.5`"),
                _ => ("another kind of value", SYNTAX_HINT),
            };
            plain(format!("expected {what}"), hint)
        }
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => (
            format!("expected {expected}, found {unexpected}"),
            Some(type_hint(expected)),
            None,
        ),
        E::Message { msg, .. } if msg.starts_with(NOT_A_BOOL) => {
            (msg.clone(), Some(type_hint(NOT_A_BOOL)), None)
        }
        E::NullIntoString { .. } => plain(
            "expected a value, found nothing (null)".to_string(),
            "write a value after the `:`; an empty value or `~` means null",
        ),
        E::UnknownAnchor { .. } => plain(
            "alias `*...` refers to an anchor that is not defined above it".to_string(),
            "define the anchor with `&name` before using `*name`",
        ),
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => (
            "aliases in this file expand to too much YAML".to_string(),
            alias_hint(),
            None,
        ),
        E::Budget { breach, .. } => match breach {
            B::Depth { .. } => plain(
                format!("values are nested more than {MAX_DEPTH} levels deep"),
                "kairo's files nest a few levels; look for runaway `[`, `{` or indentation",
            ),
            B::Nodes { .. }
            | B::Events { .. }
            | B::Aliases { .. }
            | B::Anchors { .. }
            | B::MergeKeys { .. }
            | B::RecordedAnchorEvents { .. }
            | B::RecordedAnchorBytes { .. } => (
                "aliases in this file expand to too much YAML".to_string(),
                alias_hint(),
                None,
            ),
            other => plain(
                format!("the file exceeds a YAML size limit ({other:?})"),
                "split the file, or shorten its values",
            ),
        },
        other => {
            let message = other.without_snippet().to_string();
            // The crate appends " at line X column Y"; kairo prints positions itself.
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            (message, Some(SYNTAX_HINT.into()), None)
        }
    }
}

/// Nesting deeper than this is refused (kairo's schema nests about six levels).
const MAX_DEPTH: usize = 64;

/// The number of YAML events aliases may replay in a file of `len` bytes.
fn alias_limit(len: usize) -> usize {
    crate::limits::get()
        .yaml_alias_events
        .max(len.saturating_mul(4))
}

/// Options for reading a file of `len` bytes. Without aliases, a file cannot hold more nodes
/// or events than it has bytes (times two), so those limits grow with the file: any realistic
/// repository passes, and only alias expansion can reach them.
fn options(len: usize) -> serde_saphyr::Options {
    let alias_events = alias_limit(len);
    let scaled = |floor: usize| floor.max(len.saturating_mul(2).saturating_add(64));
    serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        with_snippet: false,
        strict_booleans: true,
        // A plain scalar such as the git-hash tag `5e57483` reads as an overflowing float when
        // its type is inferred (while skipping a value); it must not be an error there. Typed
        // string fields always receive the text as written.
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: alias_events,
            max_replay_stack_depth: MAX_DEPTH,
        },
        budget: serde_saphyr::budget! {
            max_events: scaled(1_000_000).saturating_add(alias_events),
            max_nodes: scaled(250_000).saturating_add(alias_events),
            max_aliases: scaled(50_000),
            max_anchors: scaled(50_000),
            max_merge_keys: scaled(10_000),
            max_recorded_anchor_events: alias_events,
            max_depth: MAX_DEPTH,
            // One anchor used by every service is normal in a large catalog.
            enforce_alias_anchor_ratio: false,
        },
    }
}

/// The position to report for a parser error at (`line`, `column`). The scanner reports a tab
/// that starts a line at the end of the line before it; point at the tab instead.
fn tab_position(text: &str, message: &str, line: u64, column: u64) -> (u64, u64) {
    let mut lines = text.lines().skip(line.saturating_sub(1) as usize);
    match (lines.next(), lines.next()) {
        (Some(this), Some(next))
            if line > 0
                && message.contains("tab")
                && !this.contains('\t')
                && next.starts_with('\t') =>
        {
            (line + 1, 1)
        }
        _ => (line, column),
    }
}

/// Parses one YAML document into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, options(text.len())).map_err(|e| error(text, &e))
}

/// Parses a stream of YAML documents (`---` between them) into one `T` each, under the same
/// limits as [`from_str`]; empty documents are skipped.
pub fn from_str_all<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, YamlError> {
    serde_saphyr::from_multiple_with_options(text, options(text.len())).map_err(|e| error(text, &e))
}

fn error(text: &str, e: &serde_saphyr::Error) -> YamlError {
    let loc = e.location();
    let (message, hint, unknown_key) = describe(e, text.len());
    let (line, column) = tab_position(
        text,
        &message,
        loc.map_or(0, |l| l.line()),
        loc.map_or(0, |l| l.column()),
    );
    YamlError {
        line,
        column,
        message,
        hint,
        unknown_key,
    }
}

/// Whether `text` is well-formed YAML (used to check template output). This runs the parser
/// without building values: a full deserialization costs several times more, and the render
/// of a large repository checks tens of thousands of files.
pub fn check_syntax(text: &str) -> Result<(), YamlError> {
    for event in serde_saphyr::granit_parser::Parser::new_from_str(text) {
        if let Err(e) = event {
            return Err(YamlError {
                line: e.marker().line() as u64,
                column: e.marker().col() as u64 + 1,
                message: e.info(),
                hint: Some(SYNTAX_HINT.into()),
                unknown_key: None,
            });
        }
    }
    Ok(())
}

/// What `check_object` found at the top of a well-formed object: its `apiVersion` and `kind`
/// with their (1-based) lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub api_version: Option<(String, u64)>,
    pub kind: Option<(String, u64)>,
}

/// Checks that `text` is exactly one YAML document holding a mapping, without duplicate keys
/// at any depth, and returns its `apiVersion` and `kind`. Like `check_syntax`, this walks the
/// parser's events without building values, so it is cheap enough to run on every rendered
/// file.
pub fn check_object(text: &str) -> Result<ObjectHead, YamlError> {
    read_object(text, false).map(|(head, _)| head)
}

/// [`check_object`], and with `build` the object as a value (what [`object_value`] gives)
/// built in the same parse. The value is `None` when it was not asked for, or when the object
/// uses YAML the event walk leaves to the serde reader (anchors, tags, merge keys); the caller
/// then reads it with [`object_value`].
pub fn read_object(
    text: &str,
    build: bool,
) -> Result<(ObjectHead, Option<regorus::Value>), YamlError> {
    use serde_saphyr::granit_parser::{Event, Parser};
    use std::borrow::Cow;
    use std::collections::BTreeSet;
    struct Map<'t> {
        /// Borrowed from the text when the parser can (plain keys), so a key costs no copy.
        keys: BTreeSet<Cow<'t, str>>,
        /// Child nodes completed so far: even means the next node is a key.
        children: usize,
        /// The key whose value comes next, at the top level only.
        pending: Option<String>,
    }
    enum Frame<'t> {
        Map(Map<'t>),
        Seq,
    }
    let error = |line: u64, column: u64, message: String| YamlError {
        line,
        column,
        message,
        hint: None,
        unknown_key: None,
    };
    let mut head = ObjectHead::default();
    let mut builder = build.then(value::Builder::default);
    let mut stack: Vec<Frame> = Vec::new();
    let mut documents = 0;
    let mut nodes = 0;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| YamlError {
            hint: Some(SYNTAX_HINT.into()),
            ..error(
                e.marker().line() as u64,
                e.marker().col() as u64 + 1,
                e.info(),
            )
        })?;
        let line = span.start.line() as u64;
        let column = span.start.col() as u64 + 1;
        let is_node_start = matches!(
            event,
            Event::Scalar(..)
                | Event::Alias(..)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
        );
        if is_node_start {
            nodes += 1;
            if stack.is_empty() && !matches!(event, Event::MappingStart(..)) {
                return Err(error(line, column, "the document is not a mapping".into()));
            }
            if let Some(Frame::Map(map)) = stack.last_mut()
                && map.children % 2 == 0
            {
                // A key. Only scalar keys can be compared; kairo's templates use no others.
                if let Event::Scalar(key, ..) = &event {
                    if !map.keys.insert(key.clone()) {
                        return Err(error(line, column, format!("duplicate key `{key}`")));
                    }
                    if stack.len() == 1
                        && let Some(Frame::Map(top)) = stack.last_mut()
                    {
                        top.pending = Some(key.to_string());
                    }
                }
            } else if let (1, Some(Frame::Map(top)), Event::Scalar(value, ..)) =
                (stack.len(), stack.last_mut(), &event)
            {
                match top.pending.take().as_deref() {
                    Some("apiVersion") => head.api_version = Some((value.to_string(), line)),
                    Some("kind") => head.kind = Some((value.to_string(), line)),
                    _ => {}
                }
            }
        }
        if builder.as_mut().is_some_and(|b| b.event(&event).is_none()) {
            builder = None;
        }
        match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(error(
                        line,
                        column,
                        "more than one YAML document (`---`) in one file".into(),
                    ));
                }
            }
            Event::MappingStart(..) => stack.push(Frame::Map(Map {
                keys: BTreeSet::new(),
                children: 0,
                pending: None,
            })),
            Event::SequenceStart(..) => stack.push(Frame::Seq),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                if let Some(Frame::Map(parent)) = stack.last_mut() {
                    parent.children += 1;
                }
            }
            Event::Scalar(..) | Event::Alias(..) => {
                if let Some(Frame::Map(parent)) = stack.last_mut() {
                    parent.children += 1;
                }
            }
            _ => {}
        }
    }
    if nodes == 0 {
        return Err(error(1, 1, "the output is empty".into()));
    }
    Ok((head, builder.and_then(value::Builder::finish)))
}

/// Serializes `value` as block YAML without a document marker or trailing newline.
///
/// Strings always come out as one-line scalars (plain or quoted, `\n` escaped), never as `>`
/// or `|` block scalars: the text is spliced into a template at an indentation the serializer
/// cannot know, and a block scalar's continuation lines would land at the wrong one.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, String> {
    let options = serde_saphyr::ser_options! {
        prefer_block_scalars: false,
    };
    let mut out =
        serde_saphyr::to_string_with_options(value, options).map_err(|e| e.to_string())?;
    if let Some(rest) = out.strip_prefix("---\n") {
        out = rest.to_string();
    }
    while out.ends_with('\n') {
        out.pop();
    }
    Ok(out)
}

/// A boolean written exactly `true` or `false`.
///
/// YAML 1.1 readers take `yes`, `no`, `on`, `off`, `y` and `n` as booleans, and serde-saphyr
/// accepts them (and quoted `"false"`) for `bool` fields: `enabled: n` would silently turn a
/// service off. Boolean fields use this type so that anything else is an error at its position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bool(pub bool);

/// The message of a rejected boolean; `yaml::describe` adds the hint from it.
const NOT_A_BOOL: &str = "expected `true` or `false`";

impl<'de> serde::Deserialize<'de> for Bool {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The text as written, with its span: a quoted scalar's span is longer than its text.
        let text = Spanned::<String>::deserialize(deserializer)?;
        let quoted = text
            .referenced
            .span()
            .byte_len()
            .is_some_and(|len| len as usize != text.value.len());
        match text.value.as_str() {
            "true" if !quoted => Ok(Bool(true)),
            "false" if !quoted => Ok(Bool(false)),
            other => Err(serde::de::Error::custom(format_args!(
                "{NOT_A_BOOL}, found `{}`",
                if quoted {
                    format!("\"{other}\"")
                } else {
                    other.to_string()
                }
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct T {
        tag: Spanned<String>,
    }

    #[test]
    fn number_like_plain_scalars_stay_text() {
        for text in [
            "5e57483", "1234567", "1e5", "0755", "12e45", "1.0", "true", "0x1F", ".inf", "1_000",
        ] {
            let t: T =
                from_str(&format!("tag: {text}\n")).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(t.tag.value, text);
            from_str::<serde::de::IgnoredAny>(&format!("tag: {text}\n")).unwrap();
        }
    }

    #[derive(serde::Deserialize)]
    struct B {
        #[allow(dead_code)]
        on: Bool,
    }

    #[test]
    fn objects_are_checked_for_duplicates_and_documents() {
        let head = check_object("# c\napiVersion: v1\nkind: A\nspec: {a: [1, {b: 2, c: 3}]}\n");
        assert_eq!(
            head,
            Ok(ObjectHead {
                api_version: Some(("v1".into(), 2)),
                kind: Some(("A".into(), 3)),
            })
        );
        let dup = check_object("a: 1\nb:\n  x: 1\n  y: [1]\n  x: 2\n").unwrap_err();
        assert_eq!(
            (dup.line, dup.column, dup.message.as_str()),
            (5, 3, "duplicate key `x`")
        );
        // The same key in sibling mappings is fine; a value equal to a key is fine.
        check_object("a: {x: a}\nb: {x: 1}\nx: x\n").unwrap();
        let docs = check_object("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(docs.line, 2);
        assert!(check_object("").is_err());
        assert!(check_object("- a\n").is_err());
        assert!(check_object("a: [\n").is_err());
    }

    #[test]
    fn a_tab_starting_a_line_is_reported_on_that_line() {
        let e = from_str::<serde::de::IgnoredAny>("apiVersion: v1\n\tkind: A\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 1), "{e:?}");
    }

    #[test]
    fn booleans_are_true_or_false_only() {
        assert_eq!(from_str::<B>("on: true\n").map(|b| b.on), Ok(Bool(true)));
        assert_eq!(
            from_str::<B>("on: false # no\n").map(|b| b.on),
            Ok(Bool(false))
        );
        for bad in [
            "yes",
            "n",
            "off",
            "FALSE",
            "True",
            "\"false\"",
            "'true'",
            "1",
        ] {
            let e = from_str::<B>(&format!("on: {bad}\n"))
                .err()
                .unwrap_or_else(|| panic!("{bad}"));
            assert_eq!((e.line, e.column), (1, 5), "{bad}: {e:?}");
            assert!(e.message.starts_with(NOT_A_BOOL), "{bad}: {e:?}");
        }
    }
}
