//! Date and time functions for mappings, through `jiff`.
//!
//! A time argument `t` is one of: unix seconds (an int), an RFC 3339 instant with an offset
//! (`2025-06-04T07:12:07+08:00`, as the normalised instance carries), a civil date-time
//! (`2025-06-04T07:12:07`, read in the corp zone) or a date (`2025-06-04`, midnight in the corp
//! zone). Calendar questions (which date, which month) are answered in the corp zone unless a
//! zone is passed: a claim submitted at 07:00 in Shanghai belongs to that Shanghai date, not to
//! the previous UTC one. Nothing here reads the clock.

use std::sync::Arc;

use cel::{ExecutionError, Value};
use jiff::civil::{Date, DateTime};
use jiff::fmt::strtime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use super::funcs::{int, refusal, text, type_name};

type R = Result<Value, ExecutionError>;

fn s(t: String) -> Value {
    Value::String(Arc::new(t))
}

/// RFC 3339 with a numeric offset, seconds precision.
fn rfc3339(z: &Zoned) -> String {
    strtime::format("%Y-%m-%dT%H:%M:%S%:z", z).unwrap_or_else(|_| z.timestamp().to_string())
}

fn zone_arg(name: &str, v: &Value) -> Result<TimeZone, ExecutionError> {
    let z = text(name, v, "zone")?;
    TimeZone::get(z).map_err(|_| {
        refusal(
            name,
            "bad_zone",
            format!("`{z}` is not a known IANA time zone (e.g. Asia/Shanghai)"),
        )
    })
}

/// Reads a time argument as an instant in `zone`.
fn instant(name: &str, v: &Value, zone: &TimeZone, what: &str) -> Result<Zoned, ExecutionError> {
    let bad = || {
        refusal(
            name,
            "bad_time",
            format!(
                "{what} is not a time (unix seconds, RFC 3339, YYYY-MM-DDTHH:MM:SS or YYYY-MM-DD)"
            ),
        )
    };
    match v {
        Value::Int(_) | Value::UInt(_) => {
            let secs = int(name, v, what)?;
            Timestamp::from_second(secs)
                .map(|t| t.to_zoned(zone.clone()))
                .map_err(|_| bad())
        }
        Value::String(t) => {
            let t = t.trim();
            if let Ok(ts) = t.parse::<Timestamp>() {
                return Ok(ts.to_zoned(zone.clone()));
            }
            if let Ok(dt) = t.parse::<DateTime>() {
                return dt.to_zoned(zone.clone()).map_err(|_| bad());
            }
            if let Ok(d) = t.parse::<Date>() {
                return d.to_zoned(zone.clone()).map_err(|_| bad());
            }
            Err(bad())
        }
        Value::Null => Err(refusal(
            name,
            "missing_time",
            format!("{what} is empty or absent"),
        )),
        other => Err(refusal(
            name,
            "bad_time",
            format!("{what} is a {}, not a time", type_name(other)),
        )),
    }
}

/// Runs one of the date functions (see [`super::funcs::FUNCTIONS`]).
pub fn call(corp: &TimeZone, name: &str, a: &[Value]) -> R {
    match name {
        "date" => {
            let zone = match a.get(1) {
                Some(z) => zone_arg(name, z)?,
                None => corp.clone(),
            };
            Ok(s(instant(name, &a[0], &zone, "t")?.date().to_string()))
        }
        "format_time" => {
            let zone = match a.get(2) {
                Some(z) => zone_arg(name, z)?,
                None => corp.clone(),
            };
            let z = instant(name, &a[0], &zone, "t")?;
            let pattern = text(name, &a[1], "pattern")?;
            strtime::format(pattern, &z)
                .map(s)
                .map_err(|e| refusal(name, "bad_pattern", format!("pattern `{pattern}`: {e}")))
        }
        "parse_time" => {
            let t = text(name, &a[0], "text")?;
            let pattern = text(name, &a[1], "pattern")?;
            let bad = |e: jiff::Error| {
                refusal(
                    name,
                    "bad_time",
                    format!("text does not match `{pattern}`: {e}"),
                )
            };
            let tm = strtime::parse(pattern, t).map_err(bad)?;
            let z = match tm.to_zoned() {
                Ok(z) => z,
                Err(_) => match tm.to_datetime() {
                    Ok(dt) => dt.to_zoned(corp.clone()).map_err(bad)?,
                    Err(_) => tm
                        .to_date()
                        .map_err(bad)?
                        .to_zoned(corp.clone())
                        .map_err(bad)?,
                },
            };
            Ok(s(rfc3339(&z)))
        }
        "to_zone" => {
            let zone = zone_arg(name, &a[1])?;
            Ok(s(rfc3339(
                &instant(name, &a[0], corp, "t")?.with_time_zone(zone),
            )))
        }
        "from_unix" => Ok(s(rfc3339(&instant(
            name,
            &Value::Int(int(name, &a[0], "seconds")?),
            corp,
            "seconds",
        )?))),
        "unix" => Ok(Value::Int(
            instant(name, &a[0], corp, "t")?.timestamp().as_second(),
        )),
        "month_start" => Ok(s(instant(name, &a[0], corp, "t")?
            .date()
            .first_of_month()
            .to_string())),
        "month_end" => Ok(s(instant(name, &a[0], corp, "t")?
            .date()
            .last_of_month()
            .to_string())),
        "period" => {
            let d = instant(name, &a[0], corp, "t")?.date();
            Ok(s(format!("{:04}-{:02}", d.year(), d.month())))
        }
        "days_between" => {
            let from = instant(name, &a[0], corp, "from")?.date();
            let to = instant(name, &a[1], corp, "to")?.date();
            let span = from.until(to).map_err(|e| refusal(name, "bad_time", e))?;
            Ok(Value::Int(i64::from(span.get_days())))
        }
        _ => Err(ExecutionError::undeclared_reference(name)),
    }
}
