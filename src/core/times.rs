//! Durations (`7d`, `1h 30m`, `1.5h`) and RFC 3339 times as people write them,
//! in whole seconds: the syntax of the `humantime` crate (2.x), which this module
//! replaces in the .wasm (7.5 KB of it for three functions; a test compares the
//! two over generated inputs).

/// Nanoseconds in a second.
const NANOS: u64 = 1_000_000_000;

/// A duration such as `30d`, `12h`, `300s`, `1h 30m`, `1.5h` or `500ms`, in
/// whole seconds (the part below a second dropped); `None` if it is not one.
/// The syntax: numbers with a unit each (whitespace optional between them),
/// a fraction allowed; units ns (nanos, nsec), us (usec, µs), ms (millis,
/// msec), s (sec, secs, second, seconds), m (min, mins, minute, minutes), h (hr,
/// hrs, hour, hours), d (day, days), w (wk, wks, week, weeks), M (month, months:
/// 30.44 days), y (yr, yrs, year, years: 365.25 days); `0` alone.
pub fn duration_secs(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    Parser {
        iter: s.chars(),
        src: s,
    }
    .parse()
    .map(|(secs, _)| secs)
}

/// A duration in progress: seconds and nanoseconds.
type Total = (u64, u64);

struct Parser<'a> {
    iter: std::str::Chars<'a>,
    src: &'a str,
}

fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || c == 'µ'
}

impl Parser<'_> {
    fn off(&self) -> usize {
        self.src.len() - self.iter.as_str().len()
    }

    fn parse(mut self) -> Option<Total> {
        let mut n = self.first_digit()??;
        let mut out: Total = (0, 0);
        'outer: loop {
            let mut frac = None;
            let mut off = self.off();
            while let Some(c) = self.iter.next() {
                match c {
                    '0'..='9' => {
                        n = n.checked_mul(10)?.checked_add(digit(c))?;
                    }
                    c if c.is_whitespace() => {}
                    c if is_letter(c) => break,
                    '.' => {
                        frac = Some(self.fraction(&mut off)?);
                        break;
                    }
                    _ => return None,
                }
                off = self.off();
            }
            let start = off;
            let mut off = self.off();
            while let Some(c) = self.iter.next() {
                match c {
                    '0'..='9' => {
                        let unit = self.src.get(start..off)?;
                        add_unit(n, frac, unit, &mut out)?;
                        n = digit(c);
                        continue 'outer;
                    }
                    c if c.is_whitespace() => break,
                    c if is_letter(c) => {}
                    _ => return None,
                }
                off = self.off();
            }
            let unit = self.src.get(start..off)?;
            add_unit(n, frac, unit, &mut out)?;
            n = match self.first_digit()? {
                Some(n) => n,
                None => return Some(out),
            };
        }
    }

    /// The next number's first digit, after whitespace: `Some(None)` at the
    /// end, `None` at anything else.
    fn first_digit(&mut self) -> Option<Option<u64>> {
        for c in self.iter.by_ref() {
            match c {
                '0'..='9' => return Some(Some(digit(c))),
                c if c.is_whitespace() => continue,
                _ => return None,
            }
        }
        Some(None)
    }

    /// The digits after a decimal point: (numerator, denominator).
    fn fraction(&mut self, off: &mut usize) -> Option<(u64, u64)> {
        let (mut num, mut den) = (0u64, 1u64);
        let mut zeros = true;
        while let Some(c) = self.iter.next() {
            match c {
                '0' => {
                    den = den.checked_mul(10)?;
                    if !zeros {
                        num = num.checked_mul(10)?;
                    }
                }
                '1'..='9' => {
                    zeros = false;
                    den = den.checked_mul(10)?;
                    num = num.checked_mul(10)?.checked_add(digit(c))?;
                }
                c if c.is_whitespace() => {}
                c if is_letter(c) => break,
                _ => return None,
            }
            *off = self.off();
        }
        (den != 1).then_some((num, den))
    }
}

fn digit(c: char) -> u64 {
    u64::from(c.to_digit(10).unwrap_or(0))
}

/// The units: their names, and their length in seconds or, below a second,
/// in nanoseconds.
const UNITS: [(&str, u64, u64); 10] = [
    ("nanos nsec ns", 0, 1),
    ("usec us µs", 0, 1_000),
    ("millis msec ms", 0, 1_000_000),
    ("seconds second secs sec s", 1, 0),
    ("minutes minute min mins m", 60, 0),
    ("hours hour hr hrs h", 3_600, 0),
    ("days day d", 86_400, 0),
    ("weeks week wk wks w", 604_800, 0),
    ("months month M", 2_630_016, 0),
    ("years year yr yrs y", 31_557_600, 0),
];

/// `n` (and a fraction `num / den`) of `unit`, added to `out`.
fn add_unit(n: u64, frac: Option<(u64, u64)>, unit: &str, out: &mut Total) -> Option<()> {
    let &(_, secs, nanos) = UNITS
        .iter()
        .find(|(names, ..)| names.split(' ').any(|name| name == unit))?;
    add(n.checked_mul(secs)?, n.checked_mul(nanos)?, out)?;
    let Some((num, den)) = frac else {
        return Some(());
    };
    // Exact fractions only: `num * unit` must divide by `den`.
    let exact = |v: u64| (v % den == 0).then(|| v / den);
    match (secs, nanos) {
        (_, 1) => None,
        (0, k) => add(0, exact(num.checked_mul(k)?)?, out),
        // Seconds and minutes: the fraction in nanoseconds.
        (k @ (1 | 60), _) => add(0, exact(num.checked_mul(k * NANOS)?)?, out),
        (k, _) => add(exact(num.checked_mul(k)?)?, 0, out),
    }
}

fn add(sec: u64, nsec: u64, out: &mut Total) -> Option<()> {
    let mut nsec = out.1.checked_add(nsec)?;
    let mut sec = sec;
    if nsec > NANOS {
        sec = sec.checked_add(nsec / NANOS)?;
        nsec %= NANOS;
    }
    sec = out.0.checked_add(sec)?;
    if nsec >= NANOS {
        sec = sec.checked_add(nsec / NANOS)?;
        nsec %= NANOS;
    }
    *out = (sec, nsec);
    Some(())
}

/// An HTTP date in any of the three forms a recipient must accept (RFC 9110
/// 5.6.7): IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850 `Sunday,
/// 06-Nov-94 08:49:37 GMT` (a two-digit year below 70 is 20xx) and asctime `Sun Nov
///  6 08:49:37 1994`; in Unix seconds.
pub fn http_date_secs(v: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = |m: &str| MONTHS.iter().position(|x| *x == m).map(|i| i + 1);
    let parts: Vec<&str> = v.split_whitespace().collect();
    let (year, m, day, time) = match parts.as_slice() {
        [_, day, mon, year, time, "GMT"] => (year.to_string(), month(mon)?, *day, *time),
        [_, date, time, "GMT"] => {
            let d: Vec<&str> = date.split('-').collect();
            let [day, mon, yy] = d.as_slice() else {
                return None;
            };
            let yy: u32 = yy.parse().ok().filter(|_| yy.len() == 2)?;
            let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
            (year.to_string(), month(mon)?, *day, *time)
        }
        [_, mon, day, time, year] => (year.to_string(), month(mon)?, *day, *time),
        _ => return None,
    };
    if day.is_empty() || day.len() > 2 || year.len() != 4 {
        return None;
    }
    rfc3339_weak_secs(&format!("{year}-{m:02}-{day:0>2} {time}"))
}

/// An RFC 3339 time in UTC (`2026-01-31T00:00:00Z`, `…+00:00`, fractions of a
/// second allowed), in Unix seconds.
pub fn rfc3339_secs(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b.get(10) != Some(&b'T')
        || (b.last() != Some(&b'Z') && !s.ends_with("+00:00"))
    {
        return None;
    }
    rfc3339_weak_secs(s)
}

/// As [`rfc3339_secs`], also with a space for the `T` and without a zone
/// (`2026-01-31 00:00:00`, read as UTC).
pub fn rfc3339_weak_secs(s: &str) -> Option<u64> {
    let b: &[u8; 19] = s.as_bytes().get(..19)?.try_into().ok()?;
    if b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let two = |i: usize| -> Option<u64> {
        let (a, c) = (b[i], b[i + 1]);
        (a.is_ascii_digit() && c.is_ascii_digit()).then(|| u64::from((a - b'0') * 10 + (c - b'0')))
    };
    let year = two(0)? * 100 + two(2)?;
    let (month, day) = (two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    if year < 1970 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // A leap second counts as the second before it.
    let second = second.min(59);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let (mut ydays, mdays) = match month {
        1 => (0, 31),
        2 if leap => (31, 29),
        2 => (31, 28),
        3 => (59, 31),
        4 => (90, 30),
        5 => (120, 31),
        6 => (151, 30),
        7 => (181, 31),
        8 => (212, 31),
        9 => (243, 30),
        10 => (273, 31),
        11 => (304, 30),
        12 => (334, 31),
        _ => return None,
    };
    if day > mdays || day == 0 {
        return None;
    }
    ydays += day - 1;
    if leap && month > 2 {
        ydays += 1;
    }
    let leap_years =
        ((year - 1) - 1968) / 4 - ((year - 1) - 1900) / 100 + ((year - 1) - 1600) / 400;
    let days = (year - 1970) * 365 + leap_years + ydays;
    let time = second + minute * 60 + hour * 3600;
    // After the seconds: a fraction (then `Z` or `+hh:mm` at the very end),
    // `Z`, `+00:00`, or nothing.
    let rest = s.as_bytes().get(19..).unwrap_or_default();
    let len = s.len();
    if rest.first() == Some(&b'.') {
        for (idx, &c) in rest.iter().enumerate().skip(1).map(|(i, c)| (i + 19, c)) {
            match c {
                b'Z' if idx == len - 1 => break,
                b'+' if idx + 6 == len => break,
                b'0'..=b'9' => {}
                _ => return None,
            }
        }
    } else if len != 19 && (len > 25 || (rest.first() != Some(&b'Z') && rest != b"+00:00")) {
        return None;
    }
    let total = time + days * 86_400;
    // The last second of the year 9999.
    (total < 253_402_300_800).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole seconds as the project read them from `humantime`.
    fn reference_duration(s: &str) -> Option<u64> {
        std::panic::catch_unwind(|| humantime::parse_duration(s).ok().map(|d| d.as_secs()))
            .ok()
            .flatten()
    }

    fn reference_time(s: &str, weak: bool) -> Option<u64> {
        let t = if weak {
            humantime::parse_rfc3339_weak(s)
        } else {
            humantime::parse_rfc3339(s)
        };
        t.ok().map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
    }

    /// A small deterministic generator.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    #[test]
    fn durations_read_as_humantime_reads_them() {
        for s in [
            "0",
            "",
            " ",
            "7d",
            "30d",
            "12h",
            "300s",
            "1h 30m",
            "1h30m",
            "1.5h",
            "0.5s 0.5s",
            "500ms",
            "1 s",
            "1s ",
            " 1s",
            "1",
            "s",
            "1x",
            "1.s",
            ".5s",
            "1.0000000000000000001s",
            "18446744073709551615s",
            "18446744073709551616s",
            "18446744073709551615s 1s",
            "999999999ns 1ns",
            "1µs",
            "2M",
            "3y",
            "1.5y",
            "1.25ns",
            "1.5ns",
            "10 years",
            "1yr 2mins",
            "1h-1m",
            "1h,",
            "1e3s",
            "1..5s",
            "1.5.5s",
            "1 2s",
            "1s2",
            "1.5",
            "0.999999999s 0.000000001s",
            "1.000000001s",
            "1.1m",
            "1.0000000001m",
        ] {
            assert_eq!(duration_secs(s), reference_duration(s), "{s:?}");
        }
        let alphabet: Vec<char> = "0123456789 ..smhdwyMnuµr\tx-".chars().collect();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..200_000 {
            let len = rng.next(9);
            let s: String = (0..len)
                .map(|_| alphabet[rng.next(alphabet.len())])
                .collect();
            assert_eq!(duration_secs(&s), reference_duration(&s), "{s:?}");
        }
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        let t = Some(784_111_777);
        assert_eq!(http_date_secs("Sun, 06 Nov 1994 08:49:37 GMT"), t);
        assert_eq!(http_date_secs("Sunday, 06-Nov-94 08:49:37 GMT"), t);
        assert_eq!(http_date_secs("Sun Nov  6 08:49:37 1994"), t);
        assert_eq!(
            http_date_secs("Monday, 01-Jan-24 00:00:00 GMT"),
            Some(1_704_067_200)
        );
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Xyz 1994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov 6 08:49 1994",
            "yesterday",
        ] {
            assert_eq!(http_date_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_read_as_humantime_reads_them() {
        let base = [
            "2026-01-31T00:00:00Z",
            "2026-01-31T00:00:00+00:00",
            "2026-01-31 00:00:00",
            "2024-02-29T23:59:60.123456789Z",
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2026-01-31T00:00:00.5+01:00",
            "2026-01-31T00:00:00ZZ",
        ];
        let alphabet: Vec<char> = "0123456789-:T Z+.x".chars().collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for s in base {
            for weak in [false, true] {
                assert_eq!(
                    if weak {
                        rfc3339_weak_secs(s)
                    } else {
                        rfc3339_secs(s)
                    },
                    reference_time(s, weak),
                    "{s:?}"
                );
            }
            for _ in 0..20_000 {
                // One to three characters replaced, inserted or removed.
                let mut c: Vec<char> = s.chars().collect();
                for _ in 0..1 + rng.next(3) {
                    let at = rng.next(c.len() + 1);
                    let ch = alphabet[rng.next(alphabet.len())];
                    match rng.next(3) {
                        0 if at < c.len() => c[at] = ch,
                        1 => c.insert(at, ch),
                        _ if at < c.len() => {
                            c.remove(at);
                        }
                        _ => c.push(ch),
                    }
                }
                let m: String = c.into_iter().collect();
                assert_eq!(rfc3339_secs(&m), reference_time(&m, false), "{m:?}");
                assert_eq!(rfc3339_weak_secs(&m), reference_time(&m, true), "{m:?}");
            }
        }
    }
}
