//! Conformance with Flux's image-reflector-controller (cases transcribed from its policy and
//! controller tests), and properties every selection must have.

use proptest::prelude::*;

use super::*;

enum P {
    Semver(&'static str),
    Alpha(Option<&'static str>),
    Num(Option<&'static str>),
}

struct Case {
    name: &'static str,
    policy: P,
    filter: Option<(&'static str, &'static str)>,
    tags: &'static [&'static str],
    /// `None`: the policy fails (Flux: ImagePolicy not Ready).
    expected: Option<&'static str>,
}

fn build(p: &P, filter: Option<(&str, &str)>) -> Result<UpdatePolicy, String> {
    let order = |o: &Option<&str>| match o.map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => Ok(Order::Asc),
        Some("desc") => Ok(Order::Desc),
        Some(other) => Err(format!("order {other}")),
    };
    let policy = match p {
        P::Semver(r) => Policy::Semver(Range::parse(r).map_err(|e| e.to_string())?),
        P::Alpha(o) => Policy::Alphabetical(order(o)?),
        P::Num(o) => Policy::Numerical(order(o)?),
    };
    let mut up = UpdatePolicy::new(policy);
    if let Some((pattern, extract)) = filter {
        up.filter = Some(TagFilter {
            pattern: Regex::new(pattern).map_err(|e| e.to_string())?,
            extract: extract.to_string(),
        });
    }
    Ok(up)
}

fn run(p: &P, filter: Option<(&str, &str)>, tags: &[&str]) -> Option<String> {
    let policy = build(p, filter).ok()?;
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    select(&policy, &tags).ok().map(|s| s.tag)
}

const CALVER: &[&str] = &["16.04", "16.04.1", "16.10", "20.04", "20.10"];
const NAMES: &[&str] = &["xenial", "yakkety", "zesty", "artful", "bionic"];
const STAMPS: &[&str] = &[
    "1606234201",
    "1606364286",
    "1606334092",
    "1606334284",
    "1606334201",
];
const RFC3339: &[&str] = &[
    "2021-01-08T21-18-21Z",
    "2020-05-08T21-18-21Z",
    "2021-01-08T19-20-00Z",
    "1990-01-08T00-20-00Z",
    "2023-05-08T00-20-00Z",
];
const CONTROLLER: &[&str] = &[
    "0.1.0",
    "0.1.1",
    "0.2.0",
    "1.0.0",
    "1.0.1",
    "1.0.2",
    "1.1.0-alpha",
];
const FILTERED: &[&str] = &[
    "test-0.1.0",
    "test-0.1.1",
    "dev-0.2.0",
    "1.0.0",
    "1.0.1",
    "1.0.2",
    "1.1.0-alpha",
];

#[rustfmt::skip]
const FLUX_CASES: &[Case] = &[
    Case { name: "semver valid format", policy: P::Semver("1.0.x"), filter: None, tags: &["1.0.0", "1.0.0.1", "1.0.0p", "1.0.1", "1.2.0", "0.1.0"], expected: Some("1.0.1") },
    Case { name: "semver v prefix kept", policy: P::Semver("1.0.x"), filter: None, tags: &["v1.2.3", "v1.0.0", "v0.1.0"], expected: Some("v1.0.0") },
    Case { name: "semver invalid prefix", policy: P::Semver("1.0.x"), filter: None, tags: &["b1.2.3", "b1.0.0", "b0.1.0"], expected: None },
    Case { name: "semver empty list", policy: P::Semver("1.0.x"), filter: None, tags: &[], expected: None },
    Case { name: "semver no match", policy: P::Semver("1.0.x"), filter: None, tags: &["1.2.0"], expected: None },
    Case { name: "alphabetical calver", policy: P::Alpha(None), filter: None, tags: CALVER, expected: Some("20.10") },
    Case { name: "alphabetical calver desc", policy: P::Alpha(Some("desc")), filter: None, tags: CALVER, expected: Some("16.04") },
    Case { name: "alphabetical names", policy: P::Alpha(None), filter: None, tags: NAMES, expected: Some("zesty") },
    Case { name: "alphabetical names desc", policy: P::Alpha(Some("desc")), filter: None, tags: NAMES, expected: Some("artful") },
    Case { name: "alphabetical timestamps", policy: P::Alpha(None), filter: None, tags: STAMPS, expected: Some("1606364286") },
    Case { name: "alphabetical timestamps desc", policy: P::Alpha(Some("desc")), filter: None, tags: STAMPS, expected: Some("1606234201") },
    Case { name: "alphabetical prefixed timestamps", policy: P::Alpha(None), filter: None, tags: &["rel-1606234201", "rel-1606364286", "rel-1606334092", "rel-1606334284", "rel-1606334201"], expected: Some("rel-1606364286") },
    Case { name: "alphabetical rfc3339", policy: P::Alpha(None), filter: None, tags: RFC3339, expected: Some("2023-05-08T00-20-00Z") },
    Case { name: "alphabetical rfc3339 desc", policy: P::Alpha(Some("desc")), filter: None, tags: RFC3339, expected: Some("1990-01-08T00-20-00Z") },
    Case { name: "alphabetical empty", policy: P::Alpha(None), filter: None, tags: &[], expected: None },
    Case { name: "numerical integers", policy: P::Num(None), filter: None, tags: &["-62", "-88", "73", "72", "15", "16", "15", "29", "-33", "-91"], expected: Some("73") },
    Case { name: "numerical integers desc", policy: P::Num(Some("desc")), filter: None, tags: &["5", "-8", "-78", "25", "70", "-4", "80", "92", "-20", "-24"], expected: Some("-78") },
    Case { name: "numerical floats", policy: P::Num(None), filter: None, tags: &["47.40896403322944", "-27.8520927455902", "-27.930666514224427", "-31.352485948094568", "-50.41072694704882", "-21.962849842263736", "24.71884721436865", "-39.99177354004344", "53.47333823144817", "3.2008658570411086"], expected: Some("53.47333823144817") },
    Case { name: "numerical floats desc", policy: P::Num(Some("desc")), filter: None, tags: &["-65.27202780220686", "57.82948329142309", "22.40184684363291", "-86.36934305697784", "-90.29082099756083", "-12.041712603564264", "77.70488240399305", "-38.98425003883552", "16.06867070412028", "53.735674335181216"], expected: Some("-90.29082099756083") },
    Case { name: "numerical timestamps", policy: P::Num(None), filter: None, tags: STAMPS, expected: Some("1606364286") },
    Case { name: "numerical timestamps desc", policy: P::Num(Some("desc")), filter: None, tags: STAMPS, expected: Some("1606234201") },
    Case { name: "numerical single", policy: P::Num(None), filter: None, tags: &["1"], expected: Some("1") },
    Case { name: "numerical single desc", policy: P::Num(Some("desc")), filter: None, tags: &["1"], expected: Some("1") },
    Case { name: "numerical invalid value", policy: P::Num(None), filter: None, tags: &["0", "1a", "b"], expected: None },
    Case { name: "numerical empty", policy: P::Num(None), filter: None, tags: &[], expected: None },
    Case { name: "controller semver", policy: P::Semver("1.0.x"), filter: None, tags: CONTROLLER, expected: Some("1.0.2") },
    Case { name: "controller invalid range", policy: P::Semver("*-*"), filter: None, tags: CONTROLLER, expected: None },
    Case { name: "controller alphabetical", policy: P::Alpha(None), filter: None, tags: NAMES, expected: Some("zesty") },
    Case { name: "filter valid regex", policy: P::Semver(">=0.x"), filter: Some(("^test-(.*)$", "$1")), tags: FILTERED, expected: Some("test-0.1.1") },
    Case { name: "filter invalid regex", policy: P::Semver(">=0.x"), filter: Some(("^test-(.*", "$1")), tags: FILTERED, expected: None },
    Case { name: "no tags", policy: P::Semver("1.0.x"), filter: None, tags: &[], expected: None },
    Case { name: "semver no filter", policy: P::Semver("1.0.x"), filter: None, tags: &["1.0.0", "2.0.0", "1.0.1", "1.2.0"], expected: Some("1.0.1") },
    Case { name: "semver v range v tags", policy: P::Semver("v1.0.x"), filter: None, tags: &["v1.0.0", "v2.0.0", "v1.0.1", "v1.2.0"], expected: Some("v1.0.1") },
    Case { name: "semver v range plain tags", policy: P::Semver("v1.0.x"), filter: None, tags: &["1.0.0", "2.0.0", "1.0.1", "1.2.0"], expected: Some("1.0.1") },
    Case { name: "semver plain range v tags", policy: P::Semver("1.0.x"), filter: None, tags: &["v1.0.0", "v2.0.0", "v1.0.1", "v1.2.0"], expected: Some("v1.0.1") },
    Case { name: "invalid tag filter", policy: P::Semver("1.0.x"), filter: Some(("[=", "")), tags: &["1.0.0", "1.0.1"], expected: None },
    Case { name: "filter numerical named group", policy: P::Num(Some("asc")), filter: Some((r"1.0.0-rc\.(?P<num>[0-9]+)", "$num")), tags: &["1.0.0", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.3", "1.0.1-rc.2"], expected: Some("1.0.0-rc.3") },
    Case { name: "filter alphabetical named group", policy: P::Alpha(Some("asc")), filter: Some(("foo-(?P<word>[a-z]+)", "$word")), tags: &["foo-aaa", "bar-bbb", "foo-zzz", "baz-nnn", "foo-ooo"], expected: Some("foo-zzz") },
    Case { name: "digest reflection", policy: P::Semver("v1.x"), filter: None, tags: &["v1.0.0", "v1.1.0", "v1.1.1", "v2.0.0"], expected: Some("v1.1.1") },
];

#[test]
fn agrees_with_flux() {
    let mut failures = Vec::new();
    for case in FLUX_CASES {
        let got = run(&case.policy, case.filter, case.tags);
        if got.as_deref() != case.expected {
            failures.push(format!(
                "{}: expected {:?}, got {got:?}",
                case.name, case.expected
            ));
        }
        // Flux shuffles the numerical tests' input: the answer must not depend on order.
        let mut reversed = case.tags.to_vec();
        reversed.reverse();
        assert_eq!(
            run(&case.policy, case.filter, &reversed),
            got,
            "{}",
            case.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn flux_filter_cases() {
    let filtered = |pattern: &str, extract: &str, tags: &[&str]| {
        let mut p = UpdatePolicy::new(Policy::Alphabetical(Order::Asc));
        p.exclusions.clear();
        p.filter = Some(TagFilter {
            pattern: Regex::new(pattern).unwrap(),
            extract: extract.into(),
        });
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let values: BTreeSet<String> = candidates(&p, &tags)
            .0
            .into_iter()
            .map(|c| c.value)
            .collect();
        values.into_iter().collect::<Vec<_>>()
    };
    assert_eq!(filtered("", "", &["a"]), ["a"]);
    assert_eq!(
        filtered("^ver", "", &["ver1", "ver2", "ver3", "rel1"]),
        ["ver1", "ver2", "ver3"]
    );
    assert_eq!(
        filtered(r"ver(\d+)", "$1", &["ver1", "ver2", "ver3", "rel1"]),
        ["1", "2", "3"]
    );
    let debug = [
        "123-123.123.abcd123-debug",
        "123-123.123.abcd123",
        "123-123.123.abcd456-debug",
        "123-123.123.abcd456",
    ];
    assert_eq!(
        filtered(r"^(123-[0-9]+\.[0-9]+\.[a-z0-9]+-debug)", "", &debug),
        ["123-123.123.abcd123-debug", "123-123.123.abcd456-debug"]
    );
    // `[^-debug]` is a character class; duplicate extracted values collapse.
    assert_eq!(
        filtered(
            r"^(?P<tag>123-[0-9]+\.[0-9]+\.[a-z0-9]+[^-debug])",
            "$tag",
            &debug
        ),
        ["123-123.123.abcd123", "123-123.123.abcd456"]
    );
    assert_eq!(
        filtered(
            r"^(?P<tag>123-[0-9]+\.[0-9]+\.[a-z0-9]+$)",
            "${tag}",
            &debug
        ),
        ["123-123.123.abcd123", "123-123.123.abcd456"]
    );
}

fn tags(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

#[test]
fn cosign_tags_are_excluded_by_default() {
    let p = UpdatePolicy::new(Policy::Alphabetical(Order::Asc));
    let digest = format!("sha256-{}", "f".repeat(64));
    let list = tags(&[
        "1.0.0",
        &format!("{digest}.sig"),
        &format!("{digest}.att"),
        &format!("{digest}.sbom"),
    ]);
    let s = select(&p, &list).unwrap();
    assert_eq!(s.tag, "1.0.0");
    assert_eq!(s.explanation.excluded.len(), 3);
}

#[test]
fn ties_go_to_the_greatest_tag_whatever_the_order() {
    let p = UpdatePolicy::new(Policy::Semver(Range::parse(">=1.0.0").unwrap()));
    for order in [
        ["1.0.0", "v1.0.0", "1.0.0+b"],
        ["v1.0.0", "1.0.0+b", "1.0.0"],
    ] {
        assert_eq!(select(&p, &tags(&order)).unwrap().tag, "v1.0.0");
    }
    let n = UpdatePolicy::new(Policy::Numerical(Order::Asc));
    assert_eq!(select(&n, &tags(&["10", "1e1", "9"])).unwrap().tag, "1e1");
}

#[test]
fn digest_follows_one_tag() {
    let p = UpdatePolicy::new(Policy::Digest {
        tag: "staging".into(),
    });
    let list = tags(&[
        "latest",
        "staging",
        "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567",
    ]);
    assert_eq!(select(&p, &list).unwrap().tag, "staging");
    assert_eq!(
        select(&p, &tags(&["latest"])).unwrap_err(),
        PolicyError::FollowedTagMissing {
            tag: "staging".into()
        }
    );
}

#[test]
fn newest_build_orders_by_created_and_caps_candidates() {
    let mut p = UpdatePolicy::new(Policy::NewestBuild { max_candidates: 3 });
    p.exclusions
        .push(Exclusion(Regex::new("^.*-cache$").unwrap()));
    let list = tags(&["aaa", "bbb", "ccc", "main-cache"]);
    let mut times = BuildTimes::new();
    times.insert("aaa".into(), "2026-01-02T00:00:00Z".parse().unwrap());
    times.insert("bbb".into(), "2026-01-03T00:00:00+05:00".parse().unwrap());
    times.insert("ccc".into(), "2026-01-02T12:00:00Z".parse().unwrap());
    let (e, r) = evaluate(&p, &list, &times);
    // 2026-01-03T00:00+05:00 is 2026-01-02T19:00Z: the newest.
    assert_eq!(r.unwrap(), "bbb");
    assert_eq!(e.ordered[1].tag, "ccc");
    // No build times: a policy error, never "nothing new".
    assert_eq!(
        evaluate(&p, &list, &BuildTimes::new()).1,
        Err(PolicyError::NoBuildTime)
    );
    let more = tags(&["a", "b", "c", "d"]);
    assert!(matches!(
        evaluate(&p, &more, &times).1,
        Err(PolicyError::TooManyCandidates { count: 4, max: 3 })
    ));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    for bad in ["", "5", "1d", "m", "1.h", "-1m"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

fn policies() -> impl Strategy<Value = UpdatePolicy> {
    prop_oneof![
        Just(Policy::Semver(Range::parse(">=0.0.0").unwrap())),
        Just(Policy::Semver(Range::parse("^1.x || >=3.0.0-0").unwrap())),
        Just(Policy::Alphabetical(Order::Asc)),
        Just(Policy::Alphabetical(Order::Desc)),
        Just(Policy::Numerical(Order::Asc)),
        Just(Policy::Numerical(Order::Desc)),
    ]
    .prop_map(|p| {
        let mut up = UpdatePolicy::new(p);
        up.exclusions.push(Exclusion(Regex::new("^9").unwrap()));
        up
    })
}

/// `policies()`, plus `digest`, sometimes with a filter that extracts part of the tag.
fn policies_with_filters() -> impl Strategy<Value = UpdatePolicy> {
    let digest = Just({
        let mut up = UpdatePolicy::new(Policy::Digest {
            tag: "1.0.0".into(),
        });
        up.exclusions.push(Exclusion(Regex::new("^9").unwrap()));
        up
    });
    let extracts = prop_oneof![
        Just("${n}"),
        Just("$n"),
        Just("$1"),
        Just("${2}"),
        Just("$9"),
        Just("$nope"),
        Just("v$n"),
        Just("${n}0"),
        Just("$$n"),
    ];
    (prop_oneof![policies(), digest], 0..3u8, extracts).prop_map(|(mut up, f, extract)| {
        up.filter = match f {
            0 => None,
            1 => Some(TagFilter {
                pattern: Regex::new("[0-9]+").unwrap(),
                extract: String::new(),
            }),
            _ => Some(TagFilter {
                pattern: Regex::new("(?P<n>[0-9]+)(\\.|$)").unwrap(),
                extract: extract.into(),
            }),
        };
        up
    })
}

fn tag_lists() -> impl Strategy<Value = Vec<String>> {
    let tag = prop_oneof![
        "v?[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}(-rc\\.[0-9])?(\\+b[0-9])?",
        "[0-9]{1,3}",
        "[a-z0-9]{1,6}(\\.sig)?",
    ];
    proptest::collection::vec(tag, 0..40)
}

proptest! {
    #[test]
    fn selection_is_independent_of_input_order(
        policy in policies(),
        list in tag_lists(),
        seed in any::<u64>(),
    ) {
        let mut shuffled = list.clone();
        // A deterministic shuffle driven by the generated seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let a = evaluate(&policy, &list, &BuildTimes::new());
        let b = evaluate(&policy, &shuffled, &BuildTimes::new());
        prop_assert_eq!(a, b);
    }

    #[test]
    fn choose_agrees_with_evaluate(policy in policies_with_filters(), list in tag_lists()) {
        let fast = choose(&policy, &list, &BuildTimes::new());
        let full = evaluate(&policy, &list, &BuildTimes::new()).1;
        prop_assert_eq!(fast, full);
    }

    #[test]
    fn never_selects_an_excluded_tag(policy in policies(), list in tag_lists()) {
        if let Ok(s) = select(&policy, &list) {
            prop_assert!(!policy.exclusions.iter().any(|e| e.0.is_match(&s.tag)), "{}", s.tag);
            prop_assert!(list.contains(&s.tag));
        }
    }
}

#[test]
fn exclusions_changed_after_a_selection_still_apply() {
    let mut p = UpdatePolicy::new(Policy::Alphabetical(Order::Asc));
    let tags: Vec<String> = ["a", "b", "c"].iter().map(|t| t.to_string()).collect();
    assert_eq!(choose(&p, &tags, &BuildTimes::new()).unwrap(), "c");
    // The set cached by the first selection must not hide the new rule.
    p.exclusions.push(Exclusion(Regex::new("^c$").unwrap()));
    assert_eq!(choose(&p, &tags, &BuildTimes::new()).unwrap(), "b");
    assert_eq!(select(&p, &tags).unwrap().tag, "b");
    let clone = p.clone();
    assert_eq!(choose(&clone, &tags, &BuildTimes::new()).unwrap(), "b");
}
