//! Validated names: DNS-1123 labels for environments, services and pools; OCI tags and digests.
//!
//! Each check returns a short reason that the loader turns into a located diagnostic.

/// The reason `s` is not a DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 bytes).
pub fn dns_label_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > 63 {
        return Some(format!("is {} characters long; the limit is 63", s.len()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!(
            "contains `{c}`; only lowercase letters, digits and `-` are allowed"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

/// The reason `s` is not a DNS-1123 subdomain (dot-separated labels, at most 253 bytes), the
/// form of most Kubernetes object names.
pub fn dns_subdomain_problem(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some(format!("is {} characters long; the limit is 253", s.len()));
    }
    s.split('.').find_map(dns_label_problem)
}

/// The reason `s` is not a container port name (IANA service name): at most 15 lowercase
/// letters, digits and `-`, with at least one letter and no `--`.
pub fn port_name_problem(s: &str) -> Option<String> {
    if let Some(problem) = dns_label_problem(s) {
        return Some(problem);
    }
    if s.len() > 15 {
        return Some(format!(
            "is {} characters long; the limit for port names is 15",
            s.len()
        ));
    }
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        return Some("must contain a letter".into());
    }
    if s.contains("--") {
        return Some("must not contain `--`".into());
    }
    None
}

/// The reason `s` is not a Kubernetes label value (or taint value): at most 63 characters,
/// alphanumerics with `-`, `_` and `.` inside; may be empty.
pub fn label_value_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    if s.len() > 63 {
        return Some(format!("is {} characters long; the limit is 63", s.len()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Some(format!("contains `{c}`"));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !s.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

/// The reason `s` is not a Kubernetes label key (or taint key): an optional DNS-subdomain
/// prefix and `/`, then a name like a non-empty label value.
pub fn label_key_problem(s: &str) -> Option<String> {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        let valid = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix
                .split('.')
                .all(|part| dns_label_problem(part).is_none());
        if !valid {
            return Some(format!(
                "has an invalid prefix `{prefix}` (a DNS subdomain such as `example.com`)"
            ));
        }
    }
    if name.is_empty() {
        return Some("has an empty name".into());
    }
    label_value_problem(name)
}

/// The reason `s` is not an OCI tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`).
pub fn oci_tag_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > 128 {
        return Some(format!("is {} characters long; the limit is 128", s.len()));
    }
    if s.starts_with(['.', '-']) {
        return Some("must not start with `.` or `-`".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Some(format!(
            "contains `{c}`; only letters, digits, `_`, `.` and `-` are allowed"
        ));
    }
    None
}

/// The reason `s` is not a content digest (`sha256:` and 64, or `sha512:` and 128, lowercase hex).
pub fn digest_problem(s: &str) -> Option<String> {
    let Some((algorithm, hex)) = s.split_once(':') else {
        return Some("must look like `sha256:<64 hex digits>`".into());
    };
    let want = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => {
            return Some(format!(
                "uses algorithm `{algorithm}`; expected `sha256` or `sha512`"
            ));
        }
    };
    if hex.len() != want || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Some(format!(
            "must have {want} lowercase hex digits after `{algorithm}:`"
        ));
    }
    None
}

/// The closest of `candidates` to `input`, when it is close enough to be a likely typo
/// (a few edits away, transpositions counting as one).
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (input.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(input, c), c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, c)| (*distance, *c))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(dns_label_problem("api-server"), None);
        assert!(dns_label_problem("../x").is_some());
        assert!(dns_label_problem("Api").is_some());
        assert!(dns_label_problem(&"a".repeat(64)).is_some());
        assert!(dns_label_problem("-a").is_some());
        assert_eq!(dns_subdomain_problem("high.priority-1"), None);
        assert_eq!(port_name_problem("http-metrics"), None);
        for bad in ["8080", "a--b", "very-long-port-name", "Http"] {
            assert!(port_name_problem(bad).is_some(), "{bad}");
        }
        for bad in [
            "",
            "a..b",
            ".a",
            "Medium_Priority",
            "Bad Class!",
            &"a.".repeat(127),
        ] {
            assert!(dns_subdomain_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for ok in [
            "node-type",
            "nvidia.com/gpu",
            "kubernetes.io/arch",
            "a.b_c-d",
        ] {
            assert_eq!(label_key_problem(ok), None, "{ok}");
        }
        for bad in ["", "/x", "Bad_Prefix/x", "x/", "-x", "a b", &"x".repeat(64)] {
            assert!(label_key_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(label_value_problem(""), None);
        assert!(label_value_problem("a b").is_some());
        assert!(label_value_problem("-a").is_some());
    }

    #[test]
    fn tags_and_digests() {
        assert_eq!(oci_tag_problem("v1.4.3"), None);
        assert_eq!(oci_tag_problem("1a2b3c4"), None);
        assert!(oci_tag_problem("a:b").is_some());
        assert!(oci_tag_problem(".x").is_some());
        assert_eq!(digest_problem(&format!("sha256:{}", "a".repeat(64))), None);
        assert!(digest_problem("sha256:abc").is_some());
        assert!(digest_problem("md5:abc").is_some());
    }
}
