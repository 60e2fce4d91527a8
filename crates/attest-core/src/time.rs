//! The server's notion of time: whole seconds since the Unix epoch, UTC.
//!
//! Time is always an input. Nothing in the pure crates reads a clock; the service reads it once
//! per request and passes the instant down.

use std::fmt;

/// An instant, in whole seconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(i64);

/// A calendar date and time of day in UTC (proleptic Gregorian calendar).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilDate {
    /// Year, 0..=9999.
    pub year: i64,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of month, 1..=31 (checked against the month).
    pub day: u32,
    /// Hour, 0..=23.
    pub hour: u32,
    /// Minute, 0..=59.
    pub minute: u32,
    /// Second, 0..=60 (a leap second is folded into the next minute's first second).
    pub second: u32,
}

/// The earliest instant we represent as RFC 3339: 0000-01-01T00:00:00Z.
const MIN_RFC3339: i64 = -62_167_219_200;
/// The latest instant we represent as RFC 3339: 9999-12-31T23:59:59Z.
const MAX_RFC3339: i64 = 253_402_300_799;

impl UnixTime {
    /// The epoch itself.
    pub const EPOCH: UnixTime = UnixTime(0);

    /// An instant from seconds since the epoch.
    pub const fn from_secs(secs: i64) -> UnixTime {
        UnixTime(secs)
    }

    /// An instant from milliseconds since the epoch (rounded towards negative infinity), as
    /// Android's `creationDateTime` carries it.
    pub const fn from_millis(millis: i64) -> UnixTime {
        UnixTime(millis.div_euclid(1000))
    }

    /// Seconds since the epoch.
    pub const fn as_secs(self) -> i64 {
        self.0
    }

    /// This instant moved by `secs` seconds, saturating at the ends of the range.
    pub const fn saturating_add_secs(self, secs: i64) -> UnixTime {
        UnixTime(self.0.saturating_add(secs))
    }

    /// The instant of a civil date, or `None` when a field is out of range.
    pub fn from_civil(d: CivilDate) -> Option<UnixTime> {
        if !(0..=9999).contains(&d.year)
            || !(1..=12).contains(&d.month)
            || d.day < 1
            || d.day > days_in_month(d.year, d.month)
            || d.hour > 23
            || d.minute > 59
            || d.second > 60
        {
            return None;
        }
        let days = days_from_civil(d.year, d.month, d.day);
        let secs = days * 86_400
            + i64::from(d.hour) * 3_600
            + i64::from(d.minute) * 60
            + i64::from(d.second);
        Some(UnixTime(secs))
    }

    /// The civil date of this instant, or `None` outside years 0..=9999.
    pub fn to_civil(self) -> Option<CivilDate> {
        if !(MIN_RFC3339..=MAX_RFC3339).contains(&self.0) {
            return None;
        }
        let days = self.0.div_euclid(86_400);
        let rem = self.0.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        // rem is in 0..86_400, so these conversions cannot fail; fall back to None anyway.
        Some(CivilDate {
            year,
            month,
            day,
            hour: u32::try_from(rem / 3_600).ok()?,
            minute: u32::try_from((rem % 3_600) / 60).ok()?,
            second: u32::try_from(rem % 60).ok()?,
        })
    }

    /// RFC 3339 in UTC (`2026-11-28T01:55:56Z`), or `None` outside years 0..=9999.
    pub fn to_rfc3339(self) -> Option<String> {
        let c = self.to_civil()?;
        Some(format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        ))
    }

    /// Parses an RFC 3339 date-time (`2026-11-28T01:55:56Z`, `...56.123+02:00`). Fractions of
    /// a second are truncated.
    pub fn parse_rfc3339(s: &str) -> Option<UnixTime> {
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Option<u32> {
            let part = b.get(from..from.checked_add(len)?)?;
            if !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(part).ok()?.parse().ok()
        };
        let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
        if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
            return None;
        }
        let date = CivilDate {
            year: i64::from(num(0, 4)?),
            month: num(5, 2)?,
            day: num(8, 2)?,
            hour: num(11, 2)?,
            minute: num(14, 2)?,
            second: num(17, 2)?,
        };
        let mut at = 19;
        if sep(at, b".") {
            at += 1;
            let start = at;
            while b.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            if at == start {
                return None;
            }
        }
        let offset: i64 = match b.get(at) {
            Some(b'Z' | b'z') if b.len() == at + 1 => 0,
            Some(sign @ (b'+' | b'-')) if b.len() == at + 6 && sep(at + 3, b":") => {
                let h = i64::from(num(at + 1, 2)?);
                let m = i64::from(num(at + 4, 2)?);
                if h > 23 || m > 59 {
                    return None;
                }
                let off = h * 3_600 + m * 60;
                if *sign == b'+' { off } else { -off }
            }
            _ => return None,
        };
        let local = UnixTime::from_civil(date)?;
        Some(UnixTime(local.0.checked_sub(offset)?))
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_rfc3339() {
            Some(s) => f.write_str(&s),
            None => write!(f, "@{}", self.0),
        }
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

// Howard Hinnant's days-from-civil algorithm (a well-known public-domain formula): counts days
// from 1970-01-01 in the proleptic Gregorian calendar using 400-year eras.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // month is 1..=12 and day 1..=31 by construction.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        let t = UnixTime::parse_rfc3339("2026-05-24T00:00:00Z").unwrap();
        assert_eq!(t.as_secs(), 1_779_580_800);
        assert_eq!(t.to_rfc3339().unwrap(), "2026-05-24T00:00:00Z");
        assert_eq!(
            UnixTime::EPOCH.to_rfc3339().unwrap(),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            UnixTime::from_secs(-1).to_rfc3339().unwrap(),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(
            UnixTime::parse_rfc3339("2026-11-28T03:55:56.999+02:00").unwrap(),
            UnixTime::parse_rfc3339("2026-11-28T01:55:56Z").unwrap()
        );
        assert_eq!(UnixTime::from_millis(-1).as_secs(), -1);
    }

    #[test]
    fn rejects_bad_rfc3339() {
        for s in [
            "",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00Zx",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+2:00",
            "+026-01-01T00:00:00Z",
            "2026/01/01T00:00:00Z",
        ] {
            assert_eq!(UnixTime::parse_rfc3339(s), None, "{s}");
        }
        assert_eq!(UnixTime::from_secs(MAX_RFC3339 + 1).to_rfc3339(), None);
    }

    proptest! {
        #[test]
        fn civil_round_trip(secs in MIN_RFC3339..=MAX_RFC3339) {
            let t = UnixTime::from_secs(secs);
            let c = t.to_civil().unwrap();
            prop_assert_eq!(UnixTime::from_civil(c), Some(t));
            prop_assert_eq!(UnixTime::parse_rfc3339(&t.to_rfc3339().unwrap()), Some(t));
        }
    }
}
