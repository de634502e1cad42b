//! Semver ranges with the semantics of Masterminds/semver v3 `NewConstraint` and `Check`, as
//! Flux's image-reflector-controller uses them, and Flux's strict tag parsing.
//!
//! The `semver` crate implements Cargo's rules, which differ where it matters here: a bare
//! `1.2.3` is `^1.2.3` for Cargo but `=1.2.3` for Masterminds; Cargo admits a prerelease only
//! for the same `X.Y.Z`, Masterminds for any version once a comparator of the same `||` group
//! names a prerelease; Masterminds has `||`, hyphen ranges, `!=` and `=>`/`=<`. So we parse
//! ranges here and use `semver::Version` only for strict version parsing and prerelease order.
//! Build metadata never takes part in a comparison.

use std::cmp::Ordering;

use semver::{Prerelease, Version};

/// A parsed range: `||`-separated groups of comparators that must all hold.
#[derive(Debug, Clone)]
pub struct Range {
    groups: Vec<Group>,
    text: String,
}

#[derive(Debug, Clone)]
struct Group {
    terms: Vec<Term>,
    /// A comparator in this group names a prerelease: prereleases may match the group.
    has_pre: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    TildeOrEqual,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    Tilde,
    Caret,
}

#[derive(Debug, Clone)]
struct Term {
    op: Op,
    con: Version,
    dirty: bool,
    minor_dirty: bool,
    patch_dirty: bool,
}

/// Why a range was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("improper constraint: `{0}`")]
pub struct RangeError(pub String);

/// A tag parsed as Flux parses it: optional leading `v`, then strict `X.Y.Z[-pre][+build]`.
pub fn parse_tag(tag: &str) -> Option<Version> {
    Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// Masterminds' `Compare`: major, minor, patch, prerelease; build metadata ignored.
pub fn compare(a: &Version, b: &Version) -> Ordering {
    (a.major, a.minor, a.patch)
        .cmp(&(b.major, b.minor, b.patch))
        .then_with(|| compare_pre(&a.pre, &b.pre))
}

fn compare_pre(a: &Prerelease, b: &Prerelease) -> Ordering {
    // `semver` orders prereleases by the SemVer spec (an empty prerelease is greatest), as
    // Masterminds does.
    a.cmp(b)
}

const OPS: [(&str, Op); 12] = [
    // Longest first, so `>=` is not read as `>` followed by `=1.0`.
    ("!=", Op::NotEqual),
    (">=", Op::GreaterEqual),
    ("=>", Op::GreaterEqual),
    ("<=", Op::LessEqual),
    ("=<", Op::LessEqual),
    ("~>", Op::Tilde),
    ("=", Op::TildeOrEqual),
    (">", Op::Greater),
    ("<", Op::Less),
    ("~", Op::Tilde),
    ("^", Op::Caret),
    ("", Op::TildeOrEqual),
];

fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

/// One version as a range writes it: `v?N(.N)?(.N)?(-pre)?(+build)?`, where N may be a
/// wildcard. Returns the parts and the rest of the input.
struct RangeVersion<'a> {
    parts: [Option<&'a str>; 3],
    pre: Option<&'a str>,
}

fn take_while(s: &str, f: impl Fn(u8) -> bool) -> (&str, &str) {
    let n = s.bytes().take_while(|&b| f(b)).count();
    s.split_at(n)
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// Dot-separated non-empty identifiers of `[0-9A-Za-z-]`.
fn take_idents(s: &str) -> Option<(&str, &str)> {
    let mut end = 0;
    loop {
        let (ident, _) = take_while(&s[end..], is_ident_char);
        if ident.is_empty() {
            return None;
        }
        end += ident.len();
        if s[end..].starts_with('.') && s[end + 1..].bytes().next().is_some_and(is_ident_char) {
            end += 1;
        } else {
            return Some(s.split_at(end));
        }
    }
}

fn parse_range_version(s: &str) -> Option<(RangeVersion<'_>, &str)> {
    // Masterminds' class is `[0-9|x|X|\*]`: it includes a literal `|`, a quirk we keep out of
    // (a `|` here always belongs to `||`, which was split off before).
    let number = |b: u8| b.is_ascii_digit() || matches!(b, b'x' | b'X' | b'*');
    let mut rest = s.strip_prefix('v').unwrap_or(s);
    let mut parts = [None; 3];
    for (i, part) in parts.iter_mut().enumerate() {
        let body = if i == 0 {
            rest
        } else {
            match rest.strip_prefix('.') {
                Some(r) if r.bytes().next().is_some_and(number) => r,
                _ => break,
            }
        };
        let (n, r) = take_while(body, number);
        if n.is_empty() {
            return None;
        }
        *part = Some(n);
        rest = r;
    }
    let mut pre = None;
    if let Some(r) = rest.strip_prefix('-')
        && let Some((p, r)) = take_idents(r)
    {
        pre = Some(p);
        rest = r;
    }
    if let Some(r) = rest.strip_prefix('+')
        && let Some((_, r)) = take_idents(r)
    {
        rest = r;
    }
    Some((RangeVersion { parts, pre }, rest))
}

fn build_term(op: Op, v: &RangeVersion) -> Option<Term> {
    let pre = v.pre.map(|p| format!("-{p}")).unwrap_or_default();
    let [major, minor, patch] = v.parts;
    let major = major?;
    let (text, dirty, minor_dirty, patch_dirty) = if is_x(major) {
        (format!("0.0.0{pre}"), true, false, false)
    } else if minor.is_none_or(is_x) {
        (format!("{major}.0.0{pre}"), true, true, false)
    } else if patch.is_none_or(is_x) {
        (format!("{major}.{}.0{pre}", minor?), true, false, true)
    } else {
        (
            format!("{major}.{}.{}{pre}", minor?, patch?),
            false,
            false,
            false,
        )
    };
    // Masterminds' lenient NewVersion accepts leading zeros in numbers; normalise them so a
    // `1x` (digits mixed with wildcards) fails here as it does there.
    let mut nums = text.splitn(3, '.');
    let (a, b, c) = (nums.next()?, nums.next()?, nums.next()?);
    let (c, pre_part) = match c.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (c, None),
    };
    let n = |s: &str| s.parse::<u64>().ok();
    let mut con = Version::new(n(a)?, n(b)?, n(c)?);
    if let Some(p) = pre_part {
        con.pre = Prerelease::new(p).ok()?;
    }
    Some(Term {
        op,
        con,
        dirty,
        minor_dirty,
        patch_dirty,
    })
}

impl Range {
    /// Parses a range as Masterminds' `NewConstraint` does; an empty range is an error.
    pub fn parse(text: &str) -> Result<Range, RangeError> {
        let err = || RangeError(text.to_string());
        let rewritten = rewrite_hyphen_ranges(text);
        let mut groups = Vec::new();
        for segment in rewritten.split("||") {
            let mut terms = Vec::new();
            let mut rest = segment.trim();
            if rest.is_empty() {
                return Err(err());
            }
            loop {
                let (op, after_op) = OPS
                    .iter()
                    .find_map(|(s, op)| rest.strip_prefix(s).map(|r| (*op, r)))
                    .expect("the empty operator always matches");
                let (v, after) = parse_range_version(after_op.trim_start()).ok_or_else(err)?;
                terms.push(build_term(op, &v).ok_or_else(err)?);
                // Comparators are separated by whitespace or a comma.
                let trimmed = after.trim_start();
                if trimmed.is_empty() {
                    break;
                }
                let had_space = trimmed.len() < after.len();
                rest = match trimmed.strip_prefix(',') {
                    Some(r) => r.trim_start(),
                    None if had_space => trimmed,
                    None => return Err(err()),
                };
                if rest.is_empty() {
                    return Err(err());
                }
            }
            let has_pre = terms.iter().any(|t| !t.con.pre.is_empty());
            groups.push(Group { terms, has_pre });
        }
        Ok(Range {
            groups,
            text: text.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `v` satisfies every comparator of at least one group.
    pub fn matches(&self, v: &Version) -> bool {
        self.groups
            .iter()
            .any(|g| g.terms.iter().all(|t| t.check(v, g.has_pre)))
    }
}

/// `1.2 - 1.4.5` becomes `>= 1.2, <= 1.4.5`, as Masterminds rewrites it.
fn rewrite_hyphen_ranges(text: &str) -> String {
    let mut out = String::new();
    for (i, segment) in text.split("||").enumerate() {
        if i > 0 {
            out.push_str("||");
        }
        let words: Vec<&str> = segment.split_whitespace().collect();
        let mut j = 0;
        let mut rewritten = Vec::new();
        while j < words.len() {
            if j + 2 < words.len()
                && words[j + 1] == "-"
                && parse_range_version(words[j]).is_some_and(|(_, r)| r.is_empty())
                && parse_range_version(words[j + 2]).is_some_and(|(_, r)| r.is_empty())
            {
                rewritten.push(format!(">= {}, <= {}", words[j], words[j + 2]));
                j += 3;
            } else {
                rewritten.push(words[j].to_string());
                j += 1;
            }
        }
        if segment.trim().is_empty() {
            out.push_str(segment);
        } else {
            out.push_str(&rewritten.join(" "));
        }
    }
    out
}

impl Term {
    fn check(&self, v: &Version, include_pre: bool) -> bool {
        // A prerelease matches only a group that names a prerelease (Masterminds issue 21).
        if !v.pre.is_empty() && !include_pre {
            return false;
        }
        let c = &self.con;
        let cmp = compare(v, c);
        match self.op {
            Op::TildeOrEqual if self.dirty => self.tilde(v),
            Op::TildeOrEqual => cmp == Ordering::Equal,
            Op::NotEqual => {
                if self.dirty {
                    if c.major != v.major {
                        return true;
                    }
                    if c.minor != v.minor && !self.minor_dirty {
                        return true;
                    } else if self.minor_dirty {
                        return false;
                    } else if c.patch != v.patch && !self.patch_dirty {
                        return true;
                    } else if self.patch_dirty {
                        if !v.pre.is_empty() || !c.pre.is_empty() {
                            return compare_pre(&v.pre, &c.pre) != Ordering::Equal;
                        }
                        return false;
                    }
                }
                cmp != Ordering::Equal
            }
            Op::Greater => {
                if !self.dirty {
                    return cmp == Ordering::Greater;
                }
                if v.major != c.major {
                    return v.major > c.major;
                }
                if self.minor_dirty {
                    return false;
                }
                if self.patch_dirty {
                    return v.minor > c.minor;
                }
                cmp == Ordering::Greater
            }
            Op::Less => cmp == Ordering::Less,
            Op::GreaterEqual => cmp != Ordering::Less,
            Op::LessEqual => {
                if !self.dirty {
                    return cmp != Ordering::Greater;
                }
                if v.major > c.major {
                    return false;
                }
                !(v.major == c.major && v.minor > c.minor && !self.minor_dirty)
            }
            Op::Tilde => self.tilde(v),
            Op::Caret => {
                if cmp == Ordering::Less {
                    return false;
                }
                if c.major > 0 || self.minor_dirty {
                    return v.major == c.major;
                }
                if v.major > 0 {
                    return false;
                }
                if c.minor > 0 || self.patch_dirty {
                    return v.minor == c.minor;
                }
                if v.minor > 0 {
                    return false;
                }
                c.patch == v.patch
            }
        }
    }

    fn tilde(&self, v: &Version) -> bool {
        let c = &self.con;
        if compare(v, c) == Ordering::Less {
            return false;
        }
        if c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty && !self.patch_dirty {
            return true;
        }
        if v.major != c.major {
            return false;
        }
        v.minor == c.minor || self.minor_dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(range: &str, version: &str) -> bool {
        let r = Range::parse(range).unwrap_or_else(|e| panic!("{range}: {e}"));
        r.matches(&parse_tag(version).unwrap_or_else(|| panic!("{version}")))
    }

    #[test]
    fn flux_range_validation() {
        for good in [
            "1.0.x", "^1.0", "=1.0.0", "~1.0", ">=1.0", ">0,<2.0", "v1.0.x", ">=0.x",
        ] {
            assert!(Range::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "1.0.0p", "1x", "x1", "-1", "a", "", "*-*", "latest", " ", ">=1.0 ||",
        ] {
            assert!(Range::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn masterminds_semantics() {
        // A bare version is exact, unlike Cargo's caret default.
        assert!(ok("1.2.3", "1.2.3"));
        assert!(!ok("1.2.3", "1.2.4"));
        assert!(ok("1.0.x", "1.0.9"));
        assert!(!ok("1.0.x", "1.1.0"));
        assert!(ok("^1.2", "1.9.0") && !ok("^1.2", "2.0.0"));
        assert!(ok("^0.2.3", "0.2.9") && !ok("^0.2.3", "0.3.0"));
        assert!(ok("^0.0.3", "0.0.3") && !ok("^0.0.3", "0.0.4"));
        assert!(ok("~1.2.3", "1.2.9") && !ok("~1.2.3", "1.3.0"));
        assert!(ok("~1", "1.9.0") && !ok("~1", "2.0.0"));
        assert!(ok(">11", "12.0.0") && !ok(">11", "11.1.0"));
        assert!(ok(">11.1", "11.2.0") && !ok(">11.1", "11.1.5"));
        assert!(ok("<=1.2", "1.2.9") && !ok("<=1.2", "1.3.0"));
        assert!(ok("1.2 - 1.4.5", "1.4.5") && !ok("1.2 - 1.4.5", "1.4.6"));
        assert!(ok(">=1, <2 || >=3", "3.1.0") && !ok(">=1, <2 || >=3", "2.5.0"));
        assert!(ok(">= 1.0 < 2", "1.5.0"));
        assert!(ok("!=1.2.3", "1.2.4") && !ok("!=1.2.3", "1.2.3"));
        assert!(ok("*", "5.0.0") && ok("x", "0.0.1"));
        assert!(ok("v1.0.x", "1.0.1"));
        // Build metadata is ignored.
        assert!(ok("=1.0.0", "1.0.0+build.5"));
    }

    #[test]
    fn prereleases_only_when_the_group_names_one() {
        assert!(!ok("1.x", "1.1.0-alpha"));
        assert!(!ok(">=0.x", "1.1.0-alpha"));
        assert!(ok(">=1.0.0-0", "1.1.0-alpha"));
        // Masterminds v3 does not restrict prereleases to the same X.Y.Z, unlike npm/Cargo.
        assert!(ok(">=1.2.0-alpha, <1.3.0", "1.2.5-beta"));
        // Per `||` group: the second group names no prerelease.
        assert!(!ok(">=9.0.0-0 || >=1.0.0", "1.5.0-rc.1"));
    }

    #[test]
    fn strict_tags() {
        for (tag, yes) in [
            ("v1.2.3", true),
            ("v1.0", false),
            ("v1", false),
            ("v1.2.beta", false),
            ("v1.2-5", false),
            ("v1.2-beta.5", false),
            ("\nv1.2", false),
            ("v1.2.0-x.Y.0+metadata", true),
            ("v1.2.0-x.Y.0+metadata-width-hypen", true),
            ("v1.2.3-rc1-with-hypen", true),
            ("v1.2.3.4", false),
            ("1.0.0p", false),
        ] {
            assert_eq!(parse_tag(tag).is_some(), yes, "{tag:?}");
        }
    }
}
