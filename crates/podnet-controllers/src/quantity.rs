//! Kubernetes resource quantities (`250m`, `1.5Gi`, `2e3`) as exact integers.
//!
//! Every amount is held in thousandths of the unit ("milli-units") in an
//! `i128`, which represents CPU millicores exactly and any realistic memory
//! size without floating point. Fractions below a milli-unit round up, as the
//! API server does when it canonicalizes a request: a request is never
//! under-counted.

use crate::ControllerError;

/// Parses a quantity into milli-units, rounding up.
pub fn parse_quantity_milli(text: &str) -> Result<i128, ControllerError> {
    let invalid = |reason: &str| ControllerError::InvalidQuantity {
        quantity: text.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = text.trim();
    let (negative, unsigned) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        Some(_) => (false, trimmed),
        None => return Err(invalid("empty quantity")),
    };
    let number_end = unsigned
        .find(|character: char| !(character.is_ascii_digit() || character == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (integer_digits, fraction_digits) = match number.split_once('.') {
        Some((integer, fraction)) => (integer, fraction),
        None => (number, ""),
    };
    if integer_digits.is_empty() && fraction_digits.is_empty() {
        return Err(invalid("no digits"));
    }
    if fraction_digits.contains('.') {
        return Err(invalid("more than one decimal point"));
    }
    let mut mantissa: i128 = 0;
    for digit in integer_digits.bytes().chain(fraction_digits.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|value| value.checked_add(i128::from(digit - b'0')))
            .ok_or_else(|| invalid("too many digits"))?;
    }
    // Value = mantissa * 10^decimal_exponent * 1024^binary_exponent, then * 1000 for milli-units.
    let mut decimal_exponent: i32 = 3 - fraction_digits.len() as i32;
    let mut binary_exponent: u32 = 0;
    match suffix {
        "" => {}
        "n" => decimal_exponent -= 9,
        "u" => decimal_exponent -= 6,
        "m" => decimal_exponent -= 3,
        "k" => decimal_exponent += 3,
        "M" => decimal_exponent += 6,
        "G" => decimal_exponent += 9,
        "T" => decimal_exponent += 12,
        "P" => decimal_exponent += 15,
        "E" => decimal_exponent += 18,
        "Ki" => binary_exponent = 1,
        "Mi" => binary_exponent = 2,
        "Gi" => binary_exponent = 3,
        "Ti" => binary_exponent = 4,
        "Pi" => binary_exponent = 5,
        "Ei" => binary_exponent = 6,
        exponent if exponent.starts_with(['e', 'E']) => {
            let value: i32 = exponent[1..]
                .parse()
                .map_err(|_| invalid("bad decimal exponent"))?;
            if !(-40..=40).contains(&value) {
                return Err(invalid("decimal exponent out of range"));
            }
            decimal_exponent += value;
        }
        _ => return Err(invalid("unknown suffix")),
    }
    let too_large = || invalid("too large");
    let mut value = mantissa
        .checked_mul(
            1024_i128
                .checked_pow(binary_exponent)
                .ok_or_else(too_large)?,
        )
        .ok_or_else(too_large)?;
    if decimal_exponent >= 0 {
        let factor = 10_i128
            .checked_pow(decimal_exponent as u32)
            .ok_or_else(too_large)?;
        value = value.checked_mul(factor).ok_or_else(too_large)?;
    } else {
        match 10_i128.checked_pow(decimal_exponent.unsigned_abs()) {
            Some(divisor) => value = (value + divisor - 1) / divisor,
            // The divisor exceeds any representable value: a non-zero amount rounds up to 1.
            None => value = i128::from(value > 0),
        }
    }
    Ok(if negative { -value } else { value })
}

/// Formats milli-units the way people write them: whole units when exact, else `NNNm`.
pub fn format_milli(milli: i128) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_found_in_manifests() {
        let cases = [
            ("100m", 100),
            ("1", 1000),
            ("0.5", 500),
            (".25", 250),
            ("2.5", 2500),
            ("1k", 1_000_000),
            ("128Mi", 128 * 1024 * 1024 * 1000),
            ("1.5Gi", 1536 * 1024 * 1024 * 1000),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("1n", 1),
            ("0", 0),
            ("250000u", 250),
            ("-1", -1000),
            ("+2", 2000),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_quantity_milli(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn rejects_garbage_with_a_helpful_message() {
        for text in ["", "abc", "1.2.3", "12Xi", "1e", "m"] {
            let error = parse_quantity_milli(text).unwrap_err().to_string();
            assert!(error.starts_with("invalid quantity"), "{text}: {error}");
        }
        assert_eq!(
            parse_quantity_milli("12Q").unwrap_err().to_string(),
            "invalid quantity \"12Q\": unknown suffix; write it like 250m, 2, 1.5Gi or 128Mi"
        );
    }

    #[test]
    fn formats_whole_and_fractional_units() {
        assert_eq!(format_milli(2000), "2");
        assert_eq!(format_milli(250), "250m");
    }
}
