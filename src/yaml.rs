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

/// Whether `text` is one well-formed YAML document (used to check template output).
pub fn check_syntax(text: &str) -> Result<(), YamlError> {
    from_str::<serde::de::IgnoredAny>(text).map(|_| ())
}

/// Serializes `value` as block YAML without a document marker or trailing newline.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, String> {
    let mut out = serde_saphyr::to_string(value).map_err(|e| e.to_string())?;
    if let Some(rest) = out.strip_prefix("---\n") {
        out = rest.to_string();
    }
    while out.ends_with('\n') {
        out.pop();
    }
    Ok(out)
}
