//! Kubernetes quantity arithmetic: exact, canonical, rounded up.

use kairo::model::{Decimal, Granularity, Quantity, QuantityError};

fn times(q: &str, factor: &str, g: Granularity) -> String {
    Quantity::parse(q)
        .unwrap()
        .mul(Decimal::parse(factor).unwrap(), g)
        .unwrap()
        .to_string()
}

#[test]
fn multiplication_table() {
    use Granularity::{Milli, Unit};
    let cases = [
        // (quantity, multiplier, granularity, expected)
        ("512Mi", "2", Unit, "1Gi"),
        ("200m", "2.5", Milli, "500m"),
        ("1", "1.5", Milli, "1500m"),
        ("1000m", "2", Milli, "2"),
        ("2Gi", "1", Unit, "2Gi"),
        ("2Gi", "1.5", Unit, "3Gi"),
        ("1Gi", "1.5", Unit, "1536Mi"),
        ("100m", "0.333", Milli, "34m"), // 33.3m rounds up to 34m
        ("1", "0.0001", Milli, "1m"),    // never rounds down to zero
        ("1500m", "2", Milli, "3"),
        ("100M", "1.5", Unit, "150M"),
        ("3", "1.1", Milli, "3300m"),
        ("1e3", "2", Unit, "2e3"),
        ("1Ki", "0.5", Unit, "512"), // below 1Ki binary prints as a plain number
        ("1.5Gi", "2", Unit, "3Gi"),
        ("768Mi", "1.5", Unit, "1152Mi"),
        ("1Mi", "1.0000001", Unit, "1048577"), // 1048576.1 bytes rounds up to a whole byte
        ("0", "2", Milli, "0"),
    ];
    for (q, f, g, want) in cases {
        assert_eq!(times(q, f, g), want, "{q} x {f}");
    }
}

#[test]
fn canonical_printing() {
    for (input, want) in [
        ("0.5", "500m"),
        ("1000", "1k"),
        ("1024Mi", "1Gi"),
        ("1048576Ki", "1Gi"),
        ("0.1", "100m"),
        ("1.5Gi", "1536Mi"),
        ("+2", "2"),
        ("12e6", "12e6"),
        ("1n", "1n"),
        ("1u", "1u"),
        ("5E", "5E"),
        ("2097152Ki", "2Gi"),
        ("2000000Ki", "2000000Ki"),
    ] {
        assert_eq!(Quantity::parse(input).unwrap().to_string(), want, "{input}");
    }
}

#[test]
fn invalid_quantities_are_errors() {
    for bad in [
        "", "abc", "1.2.3", "5Xi", "1e", "1e-", "Mi", ".", "1 Gi", "1gi", "0x10",
    ] {
        assert!(
            matches!(Quantity::parse(bad), Err(QuantityError::Syntax(_))),
            "{bad:?} should be a syntax error, got {:?}",
            Quantity::parse(bad)
        );
    }
    assert!(matches!(
        Quantity::parse("-1"),
        Err(QuantityError::Negative(_))
    ));
    assert!(matches!(
        Quantity::parse("1e40"),
        Err(QuantityError::Overflow(_))
    ));
    assert!(matches!(
        Quantity::parse("9999999999999999999999999999E"),
        Err(QuantityError::Overflow(_))
    ));
    for bad in ["0", "-1", "x", "1e3", "", "1.5Gi"] {
        assert!(Decimal::parse(bad).is_err(), "{bad:?} is not a multiplier");
    }
}

#[test]
fn sub_nano_precision_rounds_up_like_the_api_server() {
    assert_eq!(Quantity::parse("0.0000000001").unwrap().to_string(), "1n");
}
