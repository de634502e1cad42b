//! Exact Kubernetes quantities and decimal multipliers.
//!
//! A [`Quantity`] is held as an integer count of nano-units, so parsing, multiplying and printing
//! never go through floating point. Printing follows the API server's canonical form
//! (`resource.Quantity.String()`): `1000m` prints as `1`, `2048Mi` as `2Gi`, `1.5Gi` as `1536Mi`.

use std::fmt;

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// How a quantity was written, which decides how it is printed again (as Kubernetes does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `Ki`, `Mi`, `Gi`, ...
    BinarySi,
    /// `m`, ``, `k`, `M`, ...
    DecimalSi,
    /// `1e3`, `12E6`, ...
    DecimalExponent,
}

/// A non-negative Kubernetes resource quantity such as `500m`, `2Gi` or `1.5`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

/// The smallest step a multiplied quantity is rounded up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// 1m: CPU, which Kubernetes does not schedule more finely.
    Milli,
    /// 1: bytes of memory or storage, whole devices.
    Unit,
}

impl Granularity {
    fn nanos(self) -> i128 {
        match self {
            Granularity::Milli => 1_000_000,
            Granularity::Unit => NANOS_PER_UNIT,
        }
    }
}

/// A quantity or multiplier that could not be parsed or computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("`{0}` is not a valid quantity")]
    Syntax(String),
    #[error("`{0}` must not be negative")]
    Negative(String),
    #[error("`{0}` is too large")]
    Overflow(String),
    #[error("`{0}` is not a positive decimal number")]
    Multiplier(String),
}

/// A parsed unsigned decimal number: `digits * 10^-scale`.
fn parse_decimal(s: &str) -> Option<(i128, u32)> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut units: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        units = units.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    Some((units, u32::try_from(frac.len()).ok()?))
}

fn pow10(exp: u32) -> Option<i128> {
    10i128.checked_pow(exp)
}

/// `ceil(a * b / c)` for non-negative `a`, `b` and positive `c`.
fn mul_div_ceil(a: i128, b: i128, c: i128) -> Option<i128> {
    let p = a.checked_mul(b)?;
    Some(p / c + i128::from(p % c != 0))
}

impl Quantity {
    /// Parses the Kubernetes quantity grammar: a decimal number and a binary-SI suffix
    /// (`Ki`..`Ei`), a decimal-SI suffix (`n`, `u`, `m`, none, `k`..`E`) or an exponent (`e3`).
    /// Precision finer than one nano-unit is rounded up, as the API server does.
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        let syntax = || QuantityError::Syntax(input.to_string());
        let overflow = || QuantityError::Overflow(input.to_string());
        let s = input.trim();
        if s.starts_with('-') {
            return Err(QuantityError::Negative(input.to_string()));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(split);
        let (digits, scale) = parse_decimal(number).ok_or_else(syntax)?;
        // value = digits * num / den
        let (num, den, format): (i128, i128, Format) = match suffix {
            "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
                let k = "KMGTPE".find(&suffix[..1]).expect("matched above") as u32 + 1;
                (1024i128.pow(k), 1, Format::BinarySi)
            }
            "n" => (1, 1_000_000_000, Format::DecimalSi),
            "u" => (1, 1_000_000, Format::DecimalSi),
            "m" => (1, 1_000, Format::DecimalSi),
            "" => (1, 1, Format::DecimalSi),
            "k" => (1_000, 1, Format::DecimalSi),
            "M" => (1_000_000, 1, Format::DecimalSi),
            "G" => (10i128.pow(9), 1, Format::DecimalSi),
            "T" => (10i128.pow(12), 1, Format::DecimalSi),
            "P" => (10i128.pow(15), 1, Format::DecimalSi),
            "E" => (10i128.pow(18), 1, Format::DecimalSi),
            _ => {
                let exp = suffix
                    .strip_prefix('e')
                    .or_else(|| suffix.strip_prefix('E'))
                    .ok_or_else(syntax)?;
                let (negative, mag) = match exp.as_bytes().first() {
                    Some(b'-') => (true, &exp[1..]),
                    Some(b'+') => (false, &exp[1..]),
                    _ => (false, exp),
                };
                if mag.is_empty() || !mag.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                let mag: u32 = mag.parse().map_err(|_| overflow())?;
                if mag > 27 {
                    return Err(overflow());
                }
                if negative {
                    (1, pow10(mag).ok_or_else(overflow)?, Format::DecimalExponent)
                } else {
                    (pow10(mag).ok_or_else(overflow)?, 1, Format::DecimalExponent)
                }
            }
        };
        let den = den
            .checked_mul(pow10(scale).ok_or_else(overflow)?)
            .ok_or_else(overflow)?;
        let nanos = digits
            .checked_mul(num)
            .and_then(|v| mul_div_ceil(v, NANOS_PER_UNIT, den))
            .ok_or_else(overflow)?;
        Ok(Quantity { nanos, format })
    }

    /// The quantity times `factor`, rounded up to `granularity`; keeps the written format.
    pub fn mul(
        &self,
        factor: Decimal,
        granularity: Granularity,
    ) -> Result<Quantity, QuantityError> {
        let overflow = || QuantityError::Overflow(format!("{self} x {factor}"));
        let den = pow10(factor.scale).ok_or_else(overflow)?;
        let step = granularity.nanos();
        let nanos = mul_div_ceil(
            self.nanos,
            factor.units,
            den.checked_mul(step).ok_or_else(overflow)?,
        )
        .and_then(|steps| steps.checked_mul(step))
        .ok_or_else(overflow)?;
        Ok(Quantity {
            nanos,
            format: self.format,
        })
    }

    /// Whether this is a whole number of units (GPUs must be).
    pub fn as_whole_units(&self) -> Option<u64> {
        (self.nanos % NANOS_PER_UNIT == 0)
            .then(|| u64::try_from(self.nanos / NANOS_PER_UNIT).ok())
            .flatten()
    }

    /// The value in nano-units, for comparisons.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.nanos.cmp(&other.nanos))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        if self.format == Format::BinarySi
            && self.nanos % NANOS_PER_UNIT == 0
            && self.nanos >= 1024 * NANOS_PER_UNIT
        {
            let mut value = self.nanos / NANOS_PER_UNIT;
            let mut k = 0;
            while k < 6 && value % 1024 == 0 {
                value /= 1024;
                k += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][k];
            return write!(f, "{value}{suffix}");
        }
        // Decimal: the largest exponent (a multiple of 3) that leaves an integer mantissa.
        let mut mantissa = self.nanos;
        let mut exp: i32 = -9;
        while exp < 18 && mantissa % 1000 == 0 {
            mantissa /= 1000;
            exp += 3;
        }
        match self.format {
            Format::DecimalExponent if exp != 0 => write!(f, "{mantissa}e{exp}"),
            Format::DecimalExponent => write!(f, "{mantissa}"),
            _ => {
                let suffix = match exp {
                    -9 => "n",
                    -6 => "u",
                    -3 => "m",
                    0 => "",
                    3 => "k",
                    6 => "M",
                    9 => "G",
                    12 => "T",
                    15 => "P",
                    _ => "E",
                };
                write!(f, "{mantissa}{suffix}")
            }
        }
    }
}

/// An exact positive decimal number such as the resource multiplier `1.5`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    units: i128,
    scale: u32,
}

impl Decimal {
    pub const ONE: Decimal = Decimal { units: 1, scale: 0 };

    /// Parses a plain positive decimal (`2`, `1.5`, `0.75`); no sign, exponent or unit.
    pub fn parse(input: &str) -> Result<Decimal, QuantityError> {
        let err = || QuantityError::Multiplier(input.to_string());
        let (mut units, mut scale) = parse_decimal(input.trim()).ok_or_else(err)?;
        if units == 0 || scale > 18 {
            return Err(err());
        }
        while scale > 0 && units % 10 == 0 {
            units /= 10;
            scale -= 1;
        }
        Ok(Decimal { units, scale })
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.units.to_string();
        let scale = self.scale as usize;
        if scale == 0 {
            return f.write_str(&digits);
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        for (input, canonical) in [
            ("1000m", "1"),
            ("2048Mi", "2Gi"),
            ("1.5Gi", "1536Mi"),
            ("0.5", "500m"),
            ("1e3", "1e3"),
            ("100M", "100M"),
            ("1000", "1k"),
            ("512", "512"),
            ("1023Ki", "1023Ki"),
            ("0", "0"),
        ] {
            assert_eq!(
                Quantity::parse(input).unwrap().to_string(),
                canonical,
                "{input}"
            );
        }
    }

    #[test]
    fn decimal_display_round_trips() {
        for s in ["1", "2", "1.5", "0.75", "0.05"] {
            assert_eq!(Decimal::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Decimal::parse("1.50").unwrap().to_string(), "1.5");
    }
}
