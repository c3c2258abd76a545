//! Go-style durations, as the CRDs and the command line write them.

/// Go-style durations as the CRD admits them (`2160h`, `720h30m`, `90m`, `1.5h`).
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    Some(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_the_admission_rule_admits() {
        assert_eq!(parse_duration("2160h").unwrap().as_secs(), 2160 * 3600);
        assert_eq!(parse_duration("720h30m").unwrap().as_secs(), 720 * 3600 + 1800);
        assert_eq!(parse_duration("1.5h").unwrap().as_secs(), 5400);
        for bad in ["", "90 days", "h", "10x"] {
            assert!(parse_duration(bad).is_none(), "{bad}");
        }
    }
}
