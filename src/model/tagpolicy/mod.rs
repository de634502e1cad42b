//! Image update policies (which tag a watched image should run next) and their selection.
//!
//! This module owns the `update:` schema of services (catalog default, per-environment override)
//! and `evaluate`, a pure function from a policy and a tag list to a choice and an explanation
//! of it. It must not do IO: the registry client (`crate::registry`) lists tags, resolves
//! digests and reads build times, and passes them in.
//!
//! Selection agrees with Flux's image-reflector-controller where Flux has a rule: semver ranges
//! with Masterminds semantics over strictly parsed tags, byte-wise alphabetical order, float
//! numerical order that fails on any unparsable tag, an unanchored `filterTags.pattern` whose
//! `extract` is compared while the original tag is returned, and an empty result that is an
//! error. Where Flux leaves the result to input order (equal versions or numbers, duplicate
//! extracted values), kairo picks the byte-wise greatest tag, so a registry that lists tags in
//! another order never changes the choice.

mod range;

use std::cmp::Ordering;
use std::collections::BTreeMap;
#[cfg(test)]
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::yaml::Spanned;

pub use range::{Range, RangeError, parse_tag};

/// Flux ImageRepository's default `exclusionList` is `^.*\.sig$`; kairo also leaves out the
/// attestation and SBOM tags cosign attaches (`sha256-<digest>.att`, `.sbom`).
pub const DEFAULT_EXCLUSIONS: [&str; 3] = [r"^.*\.sig$", r"^.*\.att$", r"^.*\.sbom$"];
/// How often an image is scanned when `interval` is not set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How many candidates `newestBuild` inspects at most when `maxCandidates` is not set.
pub const DEFAULT_MAX_CANDIDATES: u32 = 50;
/// The largest `maxCandidates` accepted: each candidate costs two registry requests.
pub const MAX_MAX_CANDIDATES: u32 = 1000;

// ---- input schema ------------------------------------------------------------------------

/// `update:` as written in the catalog (per service) or an environment (override).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawUpdate {
    pub policy: Option<Spanned<RawChoice>>,
    pub filter_tags: Option<RawFilter>,
    pub exclusion_list: Option<Vec<Spanned<String>>>,
    pub interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawChoice {
    pub semver: Option<RawSemver>,
    pub alphabetical: Option<RawOrder>,
    pub numerical: Option<RawOrder>,
    pub digest: Option<RawDigest>,
    pub newest_build: Option<RawNewestBuild>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSemver {
    pub range: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrder {
    pub order: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDigest {
    pub tag: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawNewestBuild {
    pub max_candidates: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    pub pattern: Option<Spanned<String>>,
    pub extract: Option<Spanned<String>>,
}

// ---- resolved policy -----------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// The greatest value wins (Flux's default).
    Asc,
    /// The smallest value wins.
    Desc,
}

/// How candidates are ordered (or which tag is followed).
#[derive(Debug, Clone)]
pub enum Policy {
    Semver(Range),
    Alphabetical(Order),
    Numerical(Order),
    /// Follow a mutable tag and pin its digest; a new digest under the tag is a bump.
    Digest {
        tag: String,
    },
    /// Order by the image config's `created` time; at most `max_candidates` are inspected.
    NewestBuild {
        max_candidates: u32,
    },
}

impl Policy {
    pub fn kind(&self) -> &'static str {
        match self {
            Policy::Semver(_) => "semver",
            Policy::Alphabetical(_) => "alphabetical",
            Policy::Numerical(_) => "numerical",
            Policy::Digest { .. } => "digest",
            Policy::NewestBuild { .. } => "newestBuild",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = |o: &Order| match o {
            Order::Asc => "asc",
            Order::Desc => "desc",
        };
        match self {
            Policy::Semver(r) => write!(f, "semver `{}`", r.as_str()),
            Policy::Alphabetical(o) => write!(f, "alphabetical {}", order(o)),
            Policy::Numerical(o) => write!(f, "numerical {}", order(o)),
            Policy::Digest { tag } => write!(f, "digest of `{tag}`"),
            Policy::NewestBuild { max_candidates } => {
                write!(f, "newestBuild (at most {max_candidates} candidates)")
            }
        }
    }
}

/// `filterTags`: an unanchored pattern and what of it is compared.
#[derive(Debug, Clone)]
pub struct TagFilter {
    pub pattern: Regex,
    /// `$1`, `${name}`...; empty compares the whole tag.
    pub extract: String,
}

/// One `exclusionList` entry (an unanchored regular expression).
#[derive(Debug, Clone)]
pub struct Exclusion(pub Regex);

/// A service's update policy in one environment, validated.
#[derive(Debug, Clone)]
pub struct UpdatePolicy {
    pub policy: Policy,
    pub filter: Option<TagFilter>,
    pub exclusions: Vec<Exclusion>,
    pub interval: Duration,
    /// `exclusions` as one `RegexSet` (one pass over a tag for every rule), compiled at the
    /// first selection and kept with the patterns it was built from.
    exclusion_set: ExclusionSet,
}

#[derive(Debug, Clone, Default)]
struct ExclusionSet(std::sync::OnceLock<(Vec<String>, regex::RegexSet)>);

impl UpdatePolicy {
    /// A policy with Flux's defaults: no filter, the default exclusions, a 5 minute interval.
    /// The default exclusions are compiled once per process and shared (a clone of a `Regex`
    /// shares its compiled program): a watcher of a thousand services holds one copy, not a
    /// thousand.
    pub fn new(policy: Policy) -> UpdatePolicy {
        static DEFAULTS: std::sync::LazyLock<(Vec<Exclusion>, regex::RegexSet)> =
            std::sync::LazyLock::new(|| {
                (
                    DEFAULT_EXCLUSIONS
                        .iter()
                        .map(|p| Exclusion(Regex::new(p).expect("valid default")))
                        .collect(),
                    regex::RegexSet::new(DEFAULT_EXCLUSIONS).expect("valid defaults"),
                )
            });
        let (exclusions, set) = &*DEFAULTS;
        let cached = (
            DEFAULT_EXCLUSIONS.iter().map(|p| p.to_string()).collect(),
            set.clone(),
        );
        UpdatePolicy {
            policy,
            filter: None,
            exclusions: exclusions.clone(),
            interval: DEFAULT_INTERVAL,
            exclusion_set: ExclusionSet(std::sync::OnceLock::from(cached)),
        }
    }

    /// The exclusions as one set. Compiling it costs more than matching 10,000 tags against
    /// it, so it is built once per policy; `exclusions` is public, so the cached set is used
    /// only while its patterns are still the policy's.
    fn exclusion_set(&self) -> std::borrow::Cow<'_, regex::RegexSet> {
        let patterns = || self.exclusions.iter().map(|e| e.0.as_str());
        let compile = || regex::RegexSet::new(patterns()).expect("each exclusion compiled alone");
        let (cached, set) = self
            .exclusion_set
            .0
            .get_or_init(|| (patterns().map(str::to_string).collect(), compile()));
        if cached.iter().map(String::as_str).eq(patterns()) {
            std::borrow::Cow::Borrowed(set)
        } else {
            std::borrow::Cow::Owned(compile())
        }
    }
}

impl Serialize for UpdatePolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            policy: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            range: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            order: Option<Order>,
            #[serde(skip_serializing_if = "Option::is_none")]
            tag: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            max_candidates: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pattern: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            extract: Option<&'a str>,
            exclusion_list: Vec<&'a str>,
            interval_seconds: u64,
        }
        let p = &self.policy;
        Out {
            policy: p.kind(),
            range: match p {
                Policy::Semver(r) => Some(r.as_str()),
                _ => None,
            },
            order: match p {
                Policy::Alphabetical(o) | Policy::Numerical(o) => Some(*o),
                _ => None,
            },
            tag: match p {
                Policy::Digest { tag } => Some(tag),
                _ => None,
            },
            max_candidates: match p {
                Policy::NewestBuild { max_candidates } => Some(*max_candidates),
                _ => None,
            },
            pattern: self.filter.as_ref().map(|f| f.pattern.as_str()),
            extract: self.filter.as_ref().map(|f| f.extract.as_str()),
            exclusion_list: self.exclusions.iter().map(|e| e.0.as_str()).collect(),
            interval_seconds: self.interval.as_secs(),
        }
        .serialize(s)
    }
}

/// A problem in an `update:` block, at the position of the offending value.
pub struct Problem {
    pub at: super::diag::Pos,
    pub message: String,
    pub hint: Option<String>,
}

/// The fields one `update:` block sets; an environment's block overrides the catalog's field
/// by field.
#[derive(Debug, Clone, Default)]
pub struct UpdateFields {
    pub policy: Option<Policy>,
    pub filter: Option<Option<TagFilter>>,
    pub exclusions: Option<Vec<Exclusion>>,
    pub interval: Option<Duration>,
}

fn problem(at: impl Into<super::diag::Pos>, message: String, hint: &str) -> Problem {
    Problem {
        at: at.into(),
        message,
        hint: (!hint.is_empty()).then(|| hint.to_string()),
    }
}

/// Validates one `update:` block; every problem is pushed, the valid fields are returned.
pub fn check(raw: &RawUpdate, problems: &mut Vec<Problem>) -> UpdateFields {
    let mut fields = UpdateFields::default();
    if let Some(choice) = &raw.policy {
        fields.policy = check_choice(choice, problems);
    }
    if let Some(filter) = &raw.filter_tags {
        let pattern = filter.pattern.as_ref().map_or("", |p| p.value.as_str());
        match Regex::new(pattern) {
            Ok(pattern) => {
                let extract = filter
                    .extract
                    .as_ref()
                    .map(|e| e.value.clone())
                    .unwrap_or_default();
                fields.filter = Some(Some(TagFilter { pattern, extract }));
            }
            Err(e) => {
                let at = filter
                    .pattern
                    .as_ref()
                    .map_or(super::diag::Pos::default(), |p| p.referenced.into());
                problems.push(problem(
                    at,
                    format!("invalid filterTags pattern `{pattern}`: {}", first_line(&e.to_string())),
                    "write a regular expression (RE2 syntax, as Flux uses), such as `^main-[a-f0-9]+-(?P<ts>[0-9]+)$`",
                ));
            }
        }
    }
    if let Some(list) = &raw.exclusion_list {
        let mut exclusions = Vec::new();
        for entry in list {
            match Regex::new(&entry.value) {
                Ok(r) => exclusions.push(Exclusion(r)),
                Err(e) => problems.push(problem(
                    entry.referenced,
                    format!(
                        "invalid exclusionList entry `{}`: {}",
                        entry.value,
                        first_line(&e.to_string())
                    ),
                    "each entry is a regular expression matched anywhere in the tag, such as `^.*-cache$`",
                )),
            }
        }
        fields.exclusions = Some(exclusions);
    }
    if let Some(interval) = &raw.interval {
        match parse_duration(&interval.value) {
            Some(d) if !d.is_zero() => fields.interval = Some(d),
            _ => problems.push(problem(
                interval.referenced,
                format!("interval `{}` is not a duration", interval.value),
                "use Go duration units `h`, `m`, `s` or `ms`, such as `5m` or `1h30m`",
            )),
        }
    }
    fields
}

fn first_line(s: &str) -> String {
    // The regex crate's messages span several lines with a caret diagram; the last line says
    // what is wrong.
    s.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or_else(|| s.lines().next().unwrap_or("").to_string())
}

const POLICY_KINDS: &str = "`semver`, `alphabetical`, `numerical`, `digest`, `newestBuild`";

fn check_order(kind: &str, raw: &RawOrder, problems: &mut Vec<Problem>) -> Option<Order> {
    let Some(order) = &raw.order else {
        return Some(Order::Asc);
    };
    // The controller upper-cases `order` before checking it.
    match order.value.to_ascii_lowercase().as_str() {
        "asc" => Some(Order::Asc),
        "desc" => Some(Order::Desc),
        _ => {
            problems.push(problem(
                order.referenced,
                format!("{kind} order `{}` is neither `asc` nor `desc`", order.value),
                "`asc` picks the greatest tag, `desc` the smallest",
            ));
            None
        }
    }
}

fn check_choice(choice: &Spanned<RawChoice>, problems: &mut Vec<Problem>) -> Option<Policy> {
    let c = &choice.value;
    let set = [
        c.semver.is_some(),
        c.alphabetical.is_some(),
        c.numerical.is_some(),
        c.digest.is_some(),
        c.newest_build.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if set != 1 {
        problems.push(problem(
            choice.referenced,
            format!("an update policy names exactly one kind; this one names {set}"),
            &format!("choose one of {POLICY_KINDS}"),
        ));
        return None;
    }
    if let Some(s) = &c.semver {
        return match Range::parse(&s.range.value) {
            Ok(r) => Some(Policy::Semver(r)),
            Err(_) => {
                problems.push(problem(
                    s.range.referenced,
                    format!("invalid semver range `{}`", s.range.value),
                    "write a range as Flux reads it (Masterminds semver), such as `1.2.x`, `^1.2`, `~1.2.3` or `>=1.0.0 <2.0.0`",
                ));
                None
            }
        };
    }
    if let Some(o) = &c.alphabetical {
        return check_order("alphabetical", o, problems).map(Policy::Alphabetical);
    }
    if let Some(o) = &c.numerical {
        return check_order("numerical", o, problems).map(Policy::Numerical);
    }
    if let Some(d) = &c.digest {
        if let Some(p) = super::names::oci_tag_problem(&d.tag.value) {
            problems.push(problem(
                d.tag.referenced,
                format!("followed tag `{}` {p}", d.tag.value),
                "name the moving tag to follow, such as `staging` or `latest`",
            ));
            return None;
        }
        return Some(Policy::Digest {
            tag: d.tag.value.clone(),
        });
    }
    let n = c.newest_build.as_ref().expect("one kind is set");
    let max = n
        .max_candidates
        .as_ref()
        .map_or(DEFAULT_MAX_CANDIDATES, |m| m.value);
    if !(1..=MAX_MAX_CANDIDATES).contains(&max) {
        let at = n
            .max_candidates
            .as_ref()
            .map(|m| m.referenced)
            .unwrap_or(choice.referenced);
        problems.push(problem(
            at,
            format!("maxCandidates {max} is outside 1-{MAX_MAX_CANDIDATES}"),
            "each candidate costs two registry requests (counted against Docker Hub's pull quota); narrow the candidates with filterTags",
        ));
        return None;
    }
    Some(Policy::NewestBuild {
        max_candidates: max,
    })
}

/// Fields are set, but no policy kind is chosen in the catalog or the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoPolicyKind;

/// Combines the catalog's fields with an environment's override. `None`: no update policy.
pub fn merge(
    base: Option<&UpdateFields>,
    over: Option<&UpdateFields>,
) -> Result<Option<UpdatePolicy>, NoPolicyKind> {
    if base.is_none() && over.is_none() {
        return Ok(None);
    }
    let pick = |f: fn(&UpdateFields) -> bool| over.filter(|o| f(o)).or(base.filter(|b| f(b)));
    let Some(policy) = pick(|f| f.policy.is_some()).and_then(|f| f.policy.clone()) else {
        return Err(NoPolicyKind);
    };
    let mut out = UpdatePolicy::new(policy);
    if let Some(filter) = pick(|f| f.filter.is_some()).and_then(|f| f.filter.clone()) {
        out.filter = filter;
    }
    if let Some(ex) = pick(|f| f.exclusions.is_some()).and_then(|f| f.exclusions.clone()) {
        out.exclusions = ex;
    }
    if let Some(i) = pick(|f| f.interval.is_some()).and_then(|f| f.interval) {
        out.interval = i;
    }
    Ok(Some(out))
}

/// A Go duration as Flux writes intervals: `^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let int = rest.bytes().take_while(u8::is_ascii_digit).count();
        if int == 0 {
            return None;
        }
        let mut len = int;
        if rest[len..].starts_with('.') {
            let frac = rest[len + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if frac == 0 {
                return None;
            }
            len += 1 + frac;
        }
        let number: f64 = rest[..len].parse().ok()?;
        rest = &rest[len..];
        let (unit, r) = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
            .iter()
            .find_map(|(u, f)| rest.strip_prefix(u).map(|r| (*f, r)))?;
        total += number * unit;
        rest = r;
    }
    Duration::try_from_secs_f64(total).ok()
}

// ---- selection -----------------------------------------------------------------------------

/// Build times (the image config's `created`) of the tags `newestBuild` inspected.
pub type BuildTimes = BTreeMap<String, jiff::Timestamp>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excluded {
    pub tag: String,
    /// The `exclusionList` entry that matched.
    pub rule: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ignored {
    pub tag: String,
    /// The compared value (the `extract` result, or the tag).
    pub value: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub tag: String,
    /// What the policy compared: the extracted value, or the build time for `newestBuild`.
    pub value: String,
}

/// Why each tag was or was not chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Matched an `exclusionList` entry.
    pub excluded: Vec<Excluded>,
    /// Did not match `filterTags.pattern`.
    pub filtered_out: Vec<String>,
    /// Passed the filter but cannot be ordered by the policy (not strict semver, outside the
    /// range, no build time).
    pub ignored: Vec<Ignored>,
    /// The remaining candidates, best first; the first is the choice.
    pub ordered: Vec<Candidate>,
}

/// A successful choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    pub tag: String,
    pub explanation: Explanation,
}

/// Why a policy chose nothing. Like Flux, an empty result is an error, never "no change".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the repository has no tags")]
    NoTags,
    #[error(
        "no tag is left after the exclusion list and filterTags ({excluded} excluded, {filtered} filtered out)"
    )]
    NoneLeft { excluded: usize, filtered: usize },
    #[error("no tag is a version in semver range `{range}`")]
    NoMatch { range: String },
    #[error(
        "tag `{tag}` (compared as `{value}`) is not a number, so the numerical policy cannot order the tags"
    )]
    NotANumber { tag: String, value: String },
    #[error("the followed tag `{tag}` does not exist in the repository")]
    FollowedTagMissing { tag: String },
    #[error("no candidate has a build time")]
    NoBuildTime,
    #[error("{count} candidates exceed newestBuild's maxCandidates {max}")]
    TooManyCandidates { count: usize, max: u32 },
}

impl PolicyError {
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            PolicyError::NoTags => "push an image, or check the repository name",
            PolicyError::NoneLeft { .. } => {
                "check `filterTags.pattern` and `exclusionList` against the tags listed"
            }
            PolicyError::NoMatch { .. } => {
                "tags are read strictly as `X.Y.Z` with an optional `v`; prereleases match only a range that names one (such as `>=1.0.0-0`)"
            }
            PolicyError::NotANumber { .. } => {
                "select numeric tags with `filterTags.pattern` (and `extract`) first"
            }
            PolicyError::FollowedTagMissing { .. } => {
                "push the tag, or follow another one with `policy.digest.tag`"
            }
            PolicyError::NoBuildTime => {
                "newestBuild needs single-platform images or indexes whose config has `created`"
            }
            PolicyError::TooManyCandidates { .. } => {
                "narrow the candidates with `filterTags.pattern`, or raise `policy.newestBuild.maxCandidates` (each candidate costs registry requests)"
            }
        })
    }
}

/// Tags that pass the exclusion list and the filter, with their compared values, plus the
/// explanation of the others. Input order and duplicates do not matter.
pub fn candidates(policy: &UpdatePolicy, tags: &[String]) -> (Vec<Candidate>, Explanation) {
    let mut unique: Vec<&str> = tags.iter().map(String::as_str).collect();
    unique.sort_unstable();
    unique.dedup();
    // One pass over each tag for all exclusions; the rule is looked up only for a hit.
    let set = policy.exclusion_set();
    let mut explanation = Explanation::default();
    let mut out = Vec::with_capacity(unique.len());
    let mut expanded = String::new();
    for tag in unique {
        if set.is_match(tag) {
            let rule = set.matches(tag).iter().next().expect("a match");
            explanation.excluded.push(Excluded {
                tag: tag.to_string(),
                rule: policy.exclusions[rule].0.as_str().to_string(),
            });
            continue;
        }
        let value = match &policy.filter {
            None => tag.to_string(),
            // `is_match` runs on the lazy DFA; captures need a slower engine, so they are
            // taken only for tags that match, and only when something is extracted.
            Some(f) if !f.pattern.is_match(tag) => {
                explanation.filtered_out.push(tag.to_string());
                continue;
            }
            Some(f) if f.extract.is_empty() => tag.to_string(),
            Some(f) => {
                let caps = f.pattern.captures(tag).expect("is_match said it matches");
                expanded.clear();
                caps.expand(&f.extract, &mut expanded);
                expanded.clone()
            }
        };
        out.push(Candidate {
            tag: tag.to_string(),
            value,
        });
    }
    (out, explanation)
}

/// Runs the policy over `tags`: the explanation always, and the chosen tag or why there is
/// none. `build_times` is read only by `newestBuild`.
pub fn evaluate(
    policy: &UpdatePolicy,
    tags: &[String],
    build_times: &BuildTimes,
) -> (Explanation, Result<String, PolicyError>) {
    let (cands, mut explanation) = candidates(policy, tags);
    if tags.is_empty() {
        return (explanation, Err(PolicyError::NoTags));
    }
    if cands.is_empty() {
        let err = PolicyError::NoneLeft {
            excluded: explanation.excluded.len(),
            filtered: explanation.filtered_out.len(),
        };
        return (explanation, Err(err));
    }
    // Ties go to the byte-wise greatest original tag (see the module comment).
    let tie = |a: &Candidate, b: &Candidate| b.tag.cmp(&a.tag);
    let result = match &policy.policy {
        Policy::Semver(range) => {
            let mut matching = Vec::new();
            for c in cands {
                match parse_tag(&c.value) {
                    None => explanation.ignored.push(Ignored {
                        reason: "not a strict X.Y.Z version".into(),
                        tag: c.tag,
                        value: c.value,
                    }),
                    Some(v) if !range.matches(&v) => explanation.ignored.push(Ignored {
                        reason: format!("outside range `{}`", range.as_str()),
                        tag: c.tag,
                        value: c.value,
                    }),
                    Some(v) => matching.push((v, c)),
                }
            }
            matching.sort_by(|(va, a), (vb, b)| range::compare(vb, va).then_with(|| tie(a, b)));
            explanation.ordered = matching.into_iter().map(|(_, c)| c).collect();
            Ok(())
        }
        Policy::Alphabetical(order) => {
            let mut cands = cands;
            cands.sort_by(|a, b| {
                let o = b.value.as_bytes().cmp(a.value.as_bytes());
                let o = if *order == Order::Asc { o } else { o.reverse() };
                o.then_with(|| tie(a, b))
            });
            explanation.ordered = cands;
            Ok(())
        }
        Policy::Numerical(order) => {
            let mut numbers = Vec::with_capacity(cands.len());
            let mut failed = None;
            for c in cands {
                match c.value.parse::<f64>() {
                    Ok(n) if !n.is_nan() => numbers.push((n, c)),
                    _ => {
                        failed.get_or_insert(PolicyError::NotANumber {
                            tag: c.tag.clone(),
                            value: c.value.clone(),
                        });
                        explanation.ignored.push(Ignored {
                            reason: "not a number".into(),
                            tag: c.tag,
                            value: c.value,
                        });
                    }
                }
            }
            numbers.sort_by(|(na, a), (nb, b)| {
                let o = nb.partial_cmp(na).unwrap_or(Ordering::Equal);
                let o = if *order == Order::Asc { o } else { o.reverse() };
                o.then_with(|| tie(a, b))
            });
            explanation.ordered = numbers.into_iter().map(|(_, c)| c).collect();
            failed.map_or(Ok(()), Err)
        }
        Policy::Digest { tag } => match cands.into_iter().find(|c| &c.tag == tag) {
            Some(c) => {
                explanation.ordered = vec![c];
                Ok(())
            }
            None => Err(PolicyError::FollowedTagMissing { tag: tag.clone() }),
        },
        Policy::NewestBuild { max_candidates } => {
            if cands.len() > *max_candidates as usize {
                Err(PolicyError::TooManyCandidates {
                    count: cands.len(),
                    max: *max_candidates,
                })
            } else {
                let mut dated = Vec::new();
                for c in cands {
                    match build_times.get(&c.tag) {
                        Some(t) => dated.push((*t, c)),
                        None => explanation.ignored.push(Ignored {
                            reason: "no build time".into(),
                            tag: c.tag,
                            value: c.value,
                        }),
                    }
                }
                dated.sort_by(|(ta, a), (tb, b)| tb.cmp(ta).then_with(|| tie(a, b)));
                explanation.ordered = dated
                    .into_iter()
                    .map(|(t, c)| Candidate {
                        tag: c.tag,
                        value: t.to_string(),
                    })
                    .collect();
                if explanation.ordered.is_empty() {
                    Err(PolicyError::NoBuildTime)
                } else {
                    Ok(())
                }
            }
        }
    };
    let result = result.and_then(|()| match explanation.ordered.first() {
        Some(c) => Ok(c.tag.clone()),
        None => match &policy.policy {
            Policy::Semver(r) => Err(PolicyError::NoMatch {
                range: r.as_str().to_string(),
            }),
            _ => Err(PolicyError::NoBuildTime),
        },
    });
    (explanation, result)
}

/// The tag `policy` picks, without an explanation: one pass over `tags`, no sorting, and no
/// allocation but the answer. This is what a watcher scanning many repositories calls; `kairo
/// tags` calls `evaluate` to show why. Always the same answer as `evaluate` (a property test
/// checks it): on any error, `evaluate` itself produces it.
pub fn choose(
    policy: &UpdatePolicy,
    tags: &[String],
    build_times: &BuildTimes,
) -> Result<String, PolicyError> {
    let slow = || evaluate(policy, tags, build_times).1;
    if tags.is_empty() || matches!(policy.policy, Policy::NewestBuild { .. }) {
        return slow();
    }
    let set = policy.exclusion_set();
    let mut expanded = String::new();
    // An `extract` that is one group (`$ts`, `${ts}`, `$1`) is read straight from the match
    // positions: no `Captures` allocated and no copy per tag. Anything else is expanded.
    let group = policy
        .filter
        .as_ref()
        .and_then(|f| single_group(&f.pattern, &f.extract));
    let mut locations = policy
        .filter
        .as_ref()
        .map(|f| f.pattern.capture_locations());
    // The best so far: its tag, and its value where the policy compares one.
    let mut best_tag: Option<&str> = None;
    let mut best_value = String::new();
    let mut best_version: Option<semver::Version> = None;
    let mut best_number = 0f64;
    for tag in tags {
        let tag = tag.as_str();
        if set.is_match(tag) {
            continue;
        }
        let value: &str = match &policy.filter {
            None => tag,
            Some(f) if !f.pattern.is_match(tag) => continue,
            Some(f) if f.extract.is_empty() => tag,
            Some(f) => match (group, locations.as_mut()) {
                (Some(g), Some(locs)) => {
                    f.pattern
                        .captures_read(locs, tag)
                        .expect("is_match said it matches");
                    // A group that did not take part expands to nothing, as `expand` does.
                    locs.get(g).map_or("", |(start, end)| &tag[start..end])
                }
                _ => {
                    let caps = f.pattern.captures(tag).expect("is_match said it matches");
                    expanded.clear();
                    caps.expand(&f.extract, &mut expanded);
                    &expanded
                }
            },
        };
        // Ties go to the byte-wise greatest tag, as in `evaluate`.
        let wins_tie = |best: Option<&str>| best.is_none_or(|b| tag > b);
        match &policy.policy {
            Policy::Semver(range) => {
                let Some(v) = parse_tag(value) else { continue };
                if !range.matches(&v) {
                    continue;
                }
                let better = match &best_version {
                    None => true,
                    Some(b) => match range::compare(&v, b) {
                        Ordering::Greater => true,
                        Ordering::Equal => wins_tie(best_tag),
                        Ordering::Less => false,
                    },
                };
                if better {
                    best_version = Some(v);
                    best_tag = Some(tag);
                }
            }
            Policy::Alphabetical(order) => {
                let o = value.as_bytes().cmp(best_value.as_bytes());
                let o = if *order == Order::Asc { o } else { o.reverse() };
                if best_tag.is_none()
                    || o == Ordering::Greater
                    || (o == Ordering::Equal && wins_tie(best_tag))
                {
                    best_value.clear();
                    best_value.push_str(value);
                    best_tag = Some(tag);
                }
            }
            Policy::Numerical(order) => {
                let n = match value.parse::<f64>() {
                    Ok(n) if !n.is_nan() => n,
                    // The policy fails on any tag that is not a number.
                    _ => return slow(),
                };
                let o = n.partial_cmp(&best_number).unwrap_or(Ordering::Equal);
                let o = if *order == Order::Asc { o } else { o.reverse() };
                if best_tag.is_none()
                    || o == Ordering::Greater
                    || (o == Ordering::Equal && wins_tie(best_tag))
                {
                    best_number = n;
                    best_tag = Some(tag);
                }
            }
            Policy::Digest { tag: followed } => {
                if tag == followed {
                    return Ok(tag.to_string());
                }
            }
            Policy::NewestBuild { .. } => unreachable!("handled by `evaluate`"),
        }
    }
    match best_tag {
        Some(t) => Ok(t.to_string()),
        None => slow(),
    }
}

/// The group index when `extract` is exactly one group reference as `Captures::expand` reads
/// it (`$name`, `${name}`, `$1`, `${1}`; a name is the longest run of `[_0-9A-Za-z]`), and that
/// group exists. `None`: expand the template.
fn single_group(pattern: &Regex, extract: &str) -> Option<usize> {
    let rest = extract.strip_prefix('$')?;
    let name = match rest.strip_prefix('{') {
        Some(braced) => braced.strip_suffix('}')?,
        None => rest,
    };
    if name.is_empty() || !name.bytes().all(|b| b == b'_' || b.is_ascii_alphanumeric()) {
        return None;
    }
    match name.parse::<usize>() {
        Ok(i) => (i < pattern.captures_len()).then_some(i),
        Err(_) => pattern.capture_names().position(|n| n == Some(name)),
    }
}

/// The tag `policy` picks from `tags`. `newestBuild` needs build times: use `evaluate`.
pub fn select(policy: &UpdatePolicy, tags: &[String]) -> Result<Selection, PolicyError> {
    let (explanation, result) = evaluate(policy, tags, &BuildTimes::new());
    result.map(|tag| Selection { tag, explanation })
}

#[cfg(test)]
mod tests;
