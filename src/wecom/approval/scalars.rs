//! Readers of single JSON values: tolerant ones (absent or wrongly typed → empty) for display
//! data, strict ones (`Result` with a fixed reason, never the value) for numbers, decimals and
//! timestamps, and the control time zone rules.

use std::str::FromStr;

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};
use rust_decimal::Decimal;
use serde_json::Value;

/// Significant digits a decimal may have so that [`Decimal`] holds it exactly.
const MAX_DECIMAL_DIGITS: usize = 28;

/// Largest accepted time zone offset in `timezone_info`, in seconds (±18 h).
const MAX_ZONE_OFFSET_SECS: i32 = 18 * 3600;

/// Iterates a JSON array; anything else (absent, `null`, a stray object) yields nothing.
pub(super) fn items(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter())
        .into_iter()
        .flatten()
}

/// A string field: strings as they are, numbers and booleans in their JSON spelling, anything
/// else empty.
pub(super) fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// A list of strings (media ids); non-strings and empty strings are skipped.
pub(super) fn strings(value: Option<&Value>) -> Vec<String> {
    items(value)
        .filter_map(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `[{text, lang}]` → the `zh_CN` text, else the first; a bare string is taken as is.
pub(super) fn lang_text(value: Option<&Value>) -> String {
    if let Some(Value::String(s)) = value {
        return s.clone();
    }
    let mut first = None;
    for entry in items(value) {
        if entry.get("lang").and_then(Value::as_str) == Some("zh_CN") {
            return text(entry.get("text"));
        }
        first.get_or_insert(entry);
    }
    first.map(|e| text(e.get("text"))).unwrap_or_default()
}

/// `hidden`: 1, `"1"` or `true`.
pub(super) fn flag(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(other) => matches!(integer(Some(other)), Ok(Some(n)) if n != 0),
        None => false,
    }
}

/// A tolerant status or type code.
pub(super) fn code(value: Option<&Value>) -> Option<u32> {
    integer(value)
        .ok()
        .flatten()
        .and_then(|n| u32::try_from(n).ok())
}

/// An integer given as a JSON number or a decimal string; `None` when absent, `null` or `""`.
pub(super) fn integer(value: Option<&Value>) -> Result<Option<i64>, &'static str> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if n.is_u64() {
                Err("integer out of range")
            } else {
                Err("not an integer")
            }
        }
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else if s
                .bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-' && s.len() > 1))
            {
                s.parse::<i64>()
                    .map(Some)
                    .map_err(|_| "integer out of range")
            } else {
                Err("not an integer")
            }
        }
        Some(_) => Err("not an integer"),
    }
}

/// A unix-seconds timestamp; `0` counts as "not set".
pub(super) fn timestamp(value: Option<&Value>) -> Result<Option<Timestamp>, &'static str> {
    match integer(value)? {
        None | Some(0) => Ok(None),
        Some(s) if s < 0 => Err("timestamp before 1970"),
        Some(s) => Timestamp::from_second(s)
            .map(Some)
            .map_err(|_| "timestamp out of range"),
    }
}

/// A timestamp where unreadable means "unknown" (process nodes, comments).
pub(super) fn lenient_time(value: Option<&Value>, tz: &TimeZone) -> Option<String> {
    let ts = timestamp(value).ok().flatten()?;
    render(ts, tz).ok().map(|(text, _)| text)
}

/// `(RFC 3339, YYYY-MM-DD)` of `ts` in `zone`, offsets rounded to whole minutes (RFC 3339 has no
/// offset seconds; only historic local-mean-time offsets have them).
pub(super) fn render(ts: Timestamp, zone: &TimeZone) -> Result<(String, String), &'static str> {
    let offset = zone.to_offset(ts);
    let seconds = offset.seconds();
    let offset = if seconds % 60 == 0 {
        offset
    } else {
        Offset::from_seconds(seconds - seconds % 60).map_err(|_| "time zone offset out of range")?
    };
    let zoned = ts.to_zoned(TimeZone::fixed(offset));
    let text = jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%:z", &zoned)
        .map_err(|_| "timestamp cannot be rendered")?;
    Ok((text, zoned.date().to_string()))
}

/// Parses an exact decimal (see the module docs); `Ok(None)` for an empty string.
pub(super) fn parse_decimal(s: &str) -> Result<Option<Decimal>, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    let digits_ok = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits_ok(whole) || !fraction.is_none_or(digits_ok) {
        return Err("not a plain decimal");
    }
    let fraction = fraction.unwrap_or("");
    let significant = whole.trim_start_matches('0').len() + fraction.len();
    if significant > MAX_DECIMAL_DIGITS || fraction.len() > MAX_DECIMAL_DIGITS {
        return Err("too many digits to represent exactly");
    }
    Decimal::from_str(s)
        .map(Some)
        .map_err(|_| "not representable")
}

/// The zone of a control's `timezone_info`, or `default` (see the module docs).
pub(super) fn zone(info: Option<&Value>, default: &TimeZone) -> TimeZone {
    let Some(info) = info.filter(|i| i.is_object()) else {
        return default.clone();
    };
    let from_desc = info
        .get("zone_desc")
        .and_then(Value::as_str)
        .and_then(parse_zone_desc);
    let offset = from_desc.or_else(|| {
        let raw = text(info.get("zone_offset"));
        // Hours west of UTC (JS getTimezoneOffset sign): negate.
        parse_hours(raw.trim()).and_then(|secs| secs.checked_neg())
    });
    offset
        .filter(|secs| secs.abs() <= MAX_ZONE_OFFSET_SECS)
        .and_then(|secs| Offset::from_seconds(secs).ok())
        .map(TimeZone::fixed)
        .unwrap_or_else(|| default.clone())
}

/// `"UTC+9"`, `"UTC-3:30"`, `"GMT+05:30"`, `"UTC"` → seconds east of UTC.
pub(super) fn parse_zone_desc(desc: &str) -> Option<i32> {
    let desc = desc.trim();
    let prefix = desc.get(..3)?;
    if !prefix.eq_ignore_ascii_case("UTC") && !prefix.eq_ignore_ascii_case("GMT") {
        return None;
    }
    let rest = desc.get(3..)?.trim();
    if rest.is_empty() {
        return Some(0);
    }
    if !rest.starts_with(['+', '-']) {
        return None;
    }
    parse_hours(rest)
}

/// `"[+-]H"`, `"[+-]H:MM"`, `"[+-]H.5"` (hours with a fraction that is a whole number of
/// minutes) → seconds, keeping the sign as written.
fn parse_hours(s: &str) -> Option<i32> {
    let (negative, unsigned) = match s.as_bytes().first()? {
        b'-' => (true, s.get(1..)?),
        b'+' => (false, s.get(1..)?),
        _ => (false, s),
    };
    let number = |part: &str, max_len: usize| -> Option<i32> {
        if part.is_empty() || part.len() > max_len || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let minutes = if let Some((h, m)) = unsigned.split_once(':') {
        if m.len() != 2 {
            return None;
        }
        let m = number(m, 2).filter(|m| *m < 60)?;
        number(h, 2)? * 60 + m
    } else if let Some((h, f)) = unsigned.split_once('.') {
        let fraction = number(f, 4)?;
        let scale = 10_i32.pow(u32::try_from(f.len()).ok()?);
        let frac_minutes = fraction * 60;
        if frac_minutes % scale != 0 {
            return None;
        }
        number(h, 2)? * 60 + frac_minutes / scale
    } else {
        number(unsigned, 2)? * 60
    };
    let seconds = minutes * 60;
    Some(if negative { -seconds } else { seconds })
}
