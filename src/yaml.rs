//! The one place kairo reads and writes YAML.
//!
//! Reading uses `serde-saphyr`: it reports line and column for every error, carries exact spans
//! through `Spanned<T>`, and rejects duplicate keys. `serde_yaml` is archived upstream, so it is
//! not used. Writing (inside templates, through the `yaml` filter) uses the same crate's
//! serializer, so quoting rules are consistent with how files are read back.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use serde_saphyr::Spanned;

/// A YAML syntax or type error with its position (1-based; 0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: u64,
    pub column: u64,
    pub message: String,
    /// For an unknown key: the key and the keys allowed at that place.
    pub unknown_key: Option<(String, Vec<&'static str>)>,
}

/// The crate's own message, reworded where a person would not know what it means.
fn describe(e: &serde_saphyr::Error) -> (String, Option<(String, Vec<&'static str>)>) {
    use serde_saphyr::Error as E;
    let mut e = e;
    while let E::WithSnippet { error, .. } | E::AliasError { error, .. } = e {
        e = error;
    }
    match e {
        E::SerdeUnknownField {
            field, expected, ..
        } => (
            format!("unknown key `{field}`"),
            Some((field.clone(), expected.clone())),
        ),
        E::DuplicateMappingKey { key: Some(k), .. } => (format!("duplicate key `{k}`"), None),
        E::DuplicateMappingKey { key: None, .. } => ("duplicate key".to_string(), None),
        E::MultipleDocuments { .. } => (
            "more than one YAML document (`---`) in one file; each file holds one".to_string(),
            None,
        ),
        E::InvalidScalar { ty, .. } => {
            let what = match *ty {
                "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number that is not negative",
                "i8" | "i16" | "i32" | "i64" => "a whole number",
                "bool" => "`true` or `false`",
                "f32" | "f64" => "a number",
                other => other,
            };
            (format!("expected {what}"), None)
        }
        other => {
            let message = other.without_snippet().to_string();
            // The crate appends " at line X column Y"; kairo prints positions itself.
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            (message, None)
        }
    }
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        with_snippet: false,
        // A plain scalar such as the git-hash tag `5e57483` reads as an overflowing float when
        // its type is inferred (while skipping a value); it must not be an error there. Typed
        // string fields always receive the text as written.
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
    }
}

/// Parses one YAML document into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| {
        let loc = e.location();
        let (message, unknown_key) = describe(&e);
        YamlError {
            line: loc.map_or(0, |l| l.line()),
            column: loc.map_or(0, |l| l.column()),
            message,
            unknown_key,
        }
    })
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
                unknown_key: None,
            });
        }
    }
    Ok(())
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
}
