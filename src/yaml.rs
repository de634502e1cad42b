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
        let message = e.without_snippet().to_string();
        // The crate appends " at line X column Y"; kairo prints positions itself.
        let message = match message.rfind(" at line ") {
            Some(i) if loc.is_some() => message[..i].to_string(),
            _ => message,
        };
        YamlError {
            line: loc.map_or(0, |l| l.line()),
            column: loc.map_or(0, |l| l.column()),
            message,
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
