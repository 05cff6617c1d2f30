//! The functions a mapping's CEL expressions may call, on top of CEL's standard library.
//!
//! Money and decimals travel through CEL as **strings** (`"1280.50"`) and are computed here with
//! [`rust_decimal`], exactly, with an explicit rounding mode where a result can have more
//! places than its inputs. No function reads the clock, the environment or the network, and
//! none loops over anything but its (bounded) arguments.
//!
//! A function refuses the document by returning a [`refusal`] error: a named code and a
//! message that names the argument, never a secret. [`decode`] turns it back into a code and
//! a message at the engine's boundary.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, KeyRef, Map as CelMap};
use cel::{ExecutionError, Value};
use rust_decimal::{Decimal, RoundingStrategy};

use super::tables::Tables;
use super::time;

/// Separates the refusal code from its message inside a CEL function error.
const CODE_SEP: char = '\u{1f}';

/// At most this many elements are accepted by one list function call (bounds the work).
const MAX_LIST: usize = 100_000;

/// Longest string a padding function may build, in characters.
const MAX_PAD: i64 = 10_000;

/// One function a mapping may call: its name, how many arguments it takes and what it does.
#[derive(Debug, Clone, Copy)]
pub struct FnSpec {
    /// Name as written in expressions.
    pub name: &'static str,
    /// Fewest arguments.
    pub min: usize,
    /// Most arguments (`usize::MAX` = any number).
    pub max: usize,
    /// Signature for error hints, e.g. `dec_add(a, b)`.
    pub sig: &'static str,
}

const fn f(name: &'static str, min: usize, max: usize, sig: &'static str) -> FnSpec {
    FnSpec {
        name,
        min,
        max,
        sig,
    }
}

/// Every function the engine adds, in the order `docs/mappings.md` lists them.
pub const FUNCTIONS: &[FnSpec] = &[
    f("dec", 1, 1, "dec(x)"),
    f("dec_add", 2, 2, "dec_add(a, b)"),
    f("dec_sub", 2, 2, "dec_sub(a, b)"),
    f("dec_mul", 4, 4, "dec_mul(a, b, places, mode)"),
    f("dec_div", 4, 4, "dec_div(a, b, places, mode)"),
    f("dec_round", 3, 3, "dec_round(x, places, mode)"),
    f("dec_neg", 1, 1, "dec_neg(x)"),
    f("dec_cmp", 2, 2, "dec_cmp(a, b)"),
    f("dec_eq", 2, 2, "dec_eq(a, b)"),
    f("dec_sum", 1, 1, "dec_sum(list)"),
    f("money", 1, 1, "money(x)"),
    f("to_cents", 1, 1, "to_cents(x)"),
    f("fixed", 2, 2, "fixed(x, places)"),
    f("thousands", 1, 1, "thousands(x)"),
    f("date", 1, 2, "date(t[, zone])"),
    f("format_time", 2, 3, "format_time(t, pattern[, zone])"),
    f("parse_time", 2, 2, "parse_time(text, pattern)"),
    f("to_zone", 2, 2, "to_zone(t, zone)"),
    f("from_unix", 1, 1, "from_unix(seconds)"),
    f("unix", 1, 1, "unix(t)"),
    f("month_start", 1, 1, "month_start(t)"),
    f("month_end", 1, 1, "month_end(t)"),
    f("period", 1, 1, "period(t)"),
    f("days_between", 2, 2, "days_between(from, to)"),
    f("trim", 1, 1, "trim(s)"),
    f("upper", 1, 1, "upper(s)"),
    f("lower", 1, 1, "lower(s)"),
    f("replace", 3, 3, "replace(s, from, to)"),
    f("substr", 2, 3, "substr(s, start[, length])"),
    f("pad_left", 3, 3, "pad_left(s, width, fill)"),
    f("pad_right", 3, 3, "pad_right(s, width, fill)"),
    f("concat", 1, usize::MAX, "concat(a, b, ...)"),
    f("join", 2, 2, "join(list, separator)"),
    f("get", 2, 3, "get(map, key[, default])"),
    f("default", 2, 2, "default(x, fallback)"),
    f("coalesce", 1, usize::MAX, "coalesce(a, b, ...)"),
    f("required", 2, 2, "required(x, name)"),
    f("refuse", 2, 2, "refuse(code, message)"),
    f("lookup", 2, 3, "lookup(table, key[, column])"),
    f("sort_by", 2, 2, "sort_by(list, field)"),
    f("pluck", 2, 2, "pluck(list, field)"),
    f("sum_by", 2, 2, "sum_by(list, field)"),
    f(
        "group_sum",
        3,
        3,
        "group_sum(list, key_field, amount_field)",
    ),
];

/// CEL's own functions and macros that a mapping may call (checked at load like ours).
pub const CEL_STANDARD: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "type",
    "dyn",
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "max",
    "min",
];

/// Looks a function up by name.
pub fn spec(name: &str) -> Option<&'static FnSpec> {
    FUNCTIONS.iter().find(|s| s.name == name)
}

/// Builds the error a function returns to refuse the document.
pub fn refusal(function: &str, code: &str, message: impl std::fmt::Display) -> ExecutionError {
    ExecutionError::function_error(function, format!("{code}{CODE_SEP}{message}"))
}

/// Splits a function error built by [`refusal`] into `(code, message)`.
pub fn decode(err: &ExecutionError) -> Option<(String, String)> {
    if let ExecutionError::FunctionError { function, message } = err
        && let Some((code, msg)) = message.split_once(CODE_SEP)
    {
        return Some((code.to_owned(), format!("{function}: {msg}")));
    }
    None
}

/// What every function call can see besides its arguments: the code tables and the corp zone.
#[derive(Debug)]
pub struct Shared {
    /// Code tables declared by the mapping.
    pub tables: Tables,
    /// The corp's zone, the default for date functions.
    pub zone: jiff::tz::TimeZone,
}

type R = Result<Value, ExecutionError>;

/// Registers every function of [`FUNCTIONS`] on a root context.
///
/// # Errors
///
/// A [`cel::DeclarationError`] if a name clashes with CEL's standard library (a bug here).
pub fn register(
    ctx: &mut cel::Context<'static, 'static>,
    shared: &Arc<Shared>,
) -> Result<(), cel::DeclarationError> {
    for spec in FUNCTIONS {
        let name = spec.name;
        let shared = Arc::clone(shared);
        ctx.add_function(
            name,
            move |cel::extractors::Arguments(args): cel::extractors::Arguments| -> R {
                call(&shared, name, &args)
            },
        )?;
    }
    Ok(())
}

/// Runs function `name` on `args` (arity was checked at load; it is checked again here).
pub fn call(sh: &Shared, name: &str, a: &[Value]) -> R {
    let Some(spec) = spec(name) else {
        return Err(ExecutionError::undeclared_reference(name));
    };
    if a.len() < spec.min || a.len() > spec.max {
        return Err(refusal(
            name,
            "wrong_arity",
            format!("expected {}", spec.sig),
        ));
    }
    match name {
        "dec" => Ok(dec_str(dec(name, &a[0], "x")?)),
        "dec_add" => checked(
            name,
            dec(name, &a[0], "a")?.checked_add(dec(name, &a[1], "b")?),
        ),
        "dec_sub" => checked(
            name,
            dec(name, &a[0], "a")?.checked_sub(dec(name, &a[1], "b")?),
        ),
        "dec_mul" => {
            let p = dec(name, &a[0], "a")?.checked_mul(dec(name, &a[1], "b")?);
            let p = p.ok_or_else(|| refusal(name, "overflow", "the product is too large"))?;
            Ok(dec_str(round(name, p, &a[2], &a[3])?))
        }
        "dec_div" => {
            let d = dec(name, &a[1], "b")?;
            if d.is_zero() {
                return Err(refusal(name, "division_by_zero", "the divisor is zero"));
            }
            let q = dec(name, &a[0], "a")?.checked_div(d);
            let q = q.ok_or_else(|| refusal(name, "overflow", "the quotient is too large"))?;
            Ok(dec_str(round(name, q, &a[2], &a[3])?))
        }
        "dec_round" => Ok(dec_str(round(name, dec(name, &a[0], "x")?, &a[1], &a[2])?)),
        "dec_neg" => Ok(dec_str(-dec(name, &a[0], "x")?)),
        "dec_cmp" => Ok(Value::Int(
            match dec(name, &a[0], "a")?.cmp(&dec(name, &a[1], "b")?) {
                Ordering::Less => -1,
                Ordering::Equal => 0,
                Ordering::Greater => 1,
            },
        )),
        "dec_eq" => Ok(Value::Bool(
            dec(name, &a[0], "a")? == dec(name, &a[1], "b")?,
        )),
        "dec_sum" => {
            let items = list(name, &a[0], "list")?;
            let mut sum = Decimal::ZERO;
            for (i, x) in items.iter().enumerate() {
                sum = add(name, sum, dec(name, x, &format_args!("list[{i}]"))?)?;
            }
            Ok(dec_str(sum))
        }
        "money" => Ok(money_str(money(name, &a[0], "x")?)),
        "to_cents" => {
            let m = money(name, &a[0], "x")?;
            let cents = m
                .checked_mul(Decimal::ONE_HUNDRED)
                .and_then(|c| i64::try_from(c).ok());
            cents
                .map(Value::Int)
                .ok_or_else(|| refusal(name, "overflow", "too many cents for an int"))
        }
        "fixed" => {
            let x = dec(name, &a[0], "x")?;
            let places = places(name, &a[1])?;
            if x.normalize().scale() > places {
                return Err(refusal(
                    name,
                    "precision",
                    format!(
                        "the value has more than {places} decimals; round it first with dec_round"
                    ),
                ));
            }
            let mut x = x;
            x.rescale(places);
            Ok(Value::String(Arc::new(x.to_string())))
        }
        "thousands" => Ok(Value::String(Arc::new(thousands(
            &dec(name, &a[0], "x")?.to_string(),
        )))),
        "date" | "format_time" | "parse_time" | "to_zone" | "from_unix" | "unix"
        | "month_start" | "month_end" | "period" | "days_between" => time::call(&sh.zone, name, a),
        "trim" => Ok(s(text(name, &a[0], "s")?.trim())),
        "upper" => Ok(s(&text(name, &a[0], "s")?.to_uppercase())),
        "lower" => Ok(s(&text(name, &a[0], "s")?.to_lowercase())),
        "replace" => Ok(s(
            &text(name, &a[0], "s")?.replace(text(name, &a[1], "from")?, text(name, &a[2], "to")?)
        )),
        "substr" => {
            let t = text(name, &a[0], "s")?;
            let start = usize::try_from(int(name, &a[1], "start")?)
                .map_err(|_| refusal(name, "bad_argument", "start is negative"))?;
            let len = match a.get(2) {
                Some(l) => usize::try_from(int(name, l, "length")?)
                    .map_err(|_| refusal(name, "bad_argument", "length is negative"))?,
                None => usize::MAX,
            };
            Ok(s(&t.chars().skip(start).take(len).collect::<String>()))
        }
        "pad_left" | "pad_right" => {
            let t = text(name, &a[0], "s")?;
            let width = int(name, &a[1], "width")?;
            let fill = text(name, &a[2], "fill")?;
            let mut fc = fill.chars();
            let (Some(fill), None) = (fc.next(), fc.next()) else {
                return Err(refusal(
                    name,
                    "bad_argument",
                    "fill must be exactly one character",
                ));
            };
            if !(0..=MAX_PAD).contains(&width) {
                return Err(refusal(
                    name,
                    "bad_argument",
                    format!("width must be 0 to {MAX_PAD}"),
                ));
            }
            let n = t.chars().count();
            let pad: String =
                std::iter::repeat_n(fill, usize::try_from(width).unwrap_or(0).saturating_sub(n))
                    .collect();
            Ok(s(&if name == "pad_left" {
                pad + t
            } else {
                format!("{t}{pad}")
            }))
        }
        "concat" => {
            let mut out = String::new();
            for (i, x) in a.iter().enumerate() {
                scalar_text(name, x, &format!("argument {}", i + 1), &mut out)?;
            }
            Ok(s(&out))
        }
        "join" => {
            let items = list(name, &a[0], "list")?;
            let sep = text(name, &a[1], "separator")?;
            let mut out = String::new();
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                scalar_text(name, x, &format_args!("list[{i}]"), &mut out)?;
            }
            Ok(s(&out))
        }
        "get" => {
            let found = match &a[0] {
                Value::Map(m) => m.get(&key(name, &a[1])?).cloned(),
                Value::List(l) => usize::try_from(int(name, &a[1], "index")?)
                    .ok()
                    .and_then(|i| l.get(i).cloned()),
                Value::Null => None,
                other => {
                    return Err(refusal(
                        name,
                        "bad_argument",
                        format!("cannot look into a {}", type_name(other)),
                    ));
                }
            };
            Ok(match found {
                Some(v) if !is_empty(&v) => v,
                _ => a.get(2).cloned().unwrap_or(Value::Null),
            })
        }
        "default" => Ok(if is_empty(&a[0]) {
            a[1].clone()
        } else {
            a[0].clone()
        }),
        "coalesce" => Ok(a
            .iter()
            .find(|x| !is_empty(x))
            .cloned()
            .unwrap_or(Value::Null)),
        "required" => {
            let what = text(name, &a[1], "name")?;
            if is_empty(&a[0]) {
                Err(refusal(
                    name,
                    "missing_field",
                    format!("`{what}` is required but empty or absent"),
                ))
            } else {
                Ok(a[0].clone())
            }
        }
        "refuse" => Err(refusal(
            name,
            text(name, &a[0], "code")?,
            text(name, &a[1], "message")?,
        )),
        "lookup" => {
            let table = text(name, &a[0], "table")?;
            let k = match &a[1] {
                Value::Int(i) => i.to_string(),
                Value::UInt(i) => i.to_string(),
                other => text(name, other, "key")?.to_owned(),
            };
            let column = match a.get(2) {
                Some(c) => Some(text(name, c, "column")?),
                None => None,
            };
            sh.tables.lookup(table, &k, column)
        }
        "sort_by" => {
            let field = text(name, &a[1], "field")?;
            let mut items: Vec<(Value, Value)> = Vec::new();
            for (i, x) in list(name, &a[0], "list")?.iter().enumerate() {
                items.push((field_of(name, x, field, i)?, x.clone()));
            }
            let mut failed = None;
            items.sort_by(|(ka, _), (kb, _)| {
                compare(ka, kb).unwrap_or_else(|| {
                    failed.get_or_insert(());
                    Ordering::Equal
                })
            });
            if failed.is_some() {
                return Err(refusal(
                    name,
                    "bad_argument",
                    format!("the values of `{field}` cannot be compared"),
                ));
            }
            Ok(Value::List(Arc::new(
                items.into_iter().map(|(_, v)| v).collect(),
            )))
        }
        "pluck" => {
            let field = text(name, &a[1], "field")?;
            let items = list(name, &a[0], "list")?;
            let out: Result<Vec<Value>, _> = items
                .iter()
                .enumerate()
                .map(|(i, x)| field_of(name, x, field, i))
                .collect();
            Ok(Value::List(Arc::new(out?)))
        }
        "sum_by" => {
            let field = text(name, &a[1], "field")?;
            let mut sum = Decimal::ZERO;
            for (i, x) in list(name, &a[0], "list")?.iter().enumerate() {
                let v = field_of(name, x, field, i)?;
                sum = add(
                    name,
                    sum,
                    dec(name, &v, &format_args!("list[{i}].{field}"))?,
                )?;
            }
            Ok(dec_str(sum))
        }
        "group_sum" => group_sum(name, a),
        _ => Err(ExecutionError::undeclared_reference(name)),
    }
}

/// `group_sum(list, key_field, amount_field)`: one `{key, amount, count}` per distinct key,
/// sorted by key, amounts summed exactly. Amounts must be money (at most two decimals).
fn group_sum(name: &str, a: &[Value]) -> R {
    let key_field = text(name, &a[1], "key_field")?;
    let amount_field = text(name, &a[2], "amount_field")?;
    let mut groups: Vec<(Arc<String>, Decimal, i64)> = Vec::new();
    for (i, row) in list(name, &a[0], "list")?.iter().enumerate() {
        let k = field_of(name, row, key_field, i)?;
        let k = match &k {
            Value::String(s) => Arc::clone(s),
            Value::Int(n) => Arc::new(n.to_string()),
            Value::UInt(n) => Arc::new(n.to_string()),
            Value::Null => {
                return Err(refusal(
                    name,
                    "missing_field",
                    format!("list[{i}].{key_field} is empty"),
                ));
            }
            other => {
                return Err(refusal(
                    name,
                    "bad_argument",
                    format!(
                        "list[{i}].{key_field} is a {}, not a string",
                        type_name(other)
                    ),
                ));
            }
        };
        let amount = money(
            name,
            &field_of(name, row, amount_field, i)?,
            &format_args!("list[{i}].{amount_field}"),
        )?;
        match groups.iter_mut().find(|(g, _, _)| *g == k) {
            Some(g) => {
                g.1 = add(name, g.1, amount)?;
                g.2 += 1;
            }
            None => groups.push((k, amount, 1)),
        }
    }
    groups.sort_by(|x, y| x.0.cmp(&y.0));
    let out = groups
        .into_iter()
        .map(|(k, amount, count)| {
            let mut m = HashMap::with_capacity(3);
            m.insert(Key::String(Arc::new("key".into())), Value::String(k));
            m.insert(Key::String(Arc::new("amount".into())), money_str(amount));
            m.insert(Key::String(Arc::new("count".into())), Value::Int(count));
            Value::Map(CelMap { map: Arc::new(m) })
        })
        .collect();
    Ok(Value::List(Arc::new(out)))
}

fn s(t: &str) -> Value {
    Value::String(Arc::new(t.to_owned()))
}

fn dec_str(d: Decimal) -> Value {
    Value::String(Arc::new(d.to_string()))
}

/// Money as a string with exactly two decimals.
pub fn money_str(d: Decimal) -> Value {
    let mut d = d;
    d.rescale(2);
    Value::String(Arc::new(d.to_string()))
}

fn checked(name: &str, d: Option<Decimal>) -> R {
    d.map(dec_str)
        .ok_or_else(|| refusal(name, "overflow", "the result is too large"))
}

fn add(name: &str, a: Decimal, b: Decimal) -> Result<Decimal, ExecutionError> {
    a.checked_add(b)
        .ok_or_else(|| refusal(name, "overflow", "the sum is too large"))
}

/// CEL's name for a value's type, for messages (never the value itself).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Function(..) => "function",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        _ => "value",
    }
}

/// Parses a decimal argument exactly: a string or an integer. Doubles are refused (inexact).
/// `what` names the argument in a refusal; it is only formatted when one is made (sums call
/// this for every row).
pub fn dec(
    name: &str,
    v: &Value,
    what: &(impl std::fmt::Display + ?Sized),
) -> Result<Decimal, ExecutionError> {
    match v {
        Value::String(t) => parse_decimal(t.trim()).ok_or_else(|| {
            refusal(
                name,
                "bad_amount",
                format!("{what} is not a decimal number"),
            )
        }),
        Value::Int(i) => Ok(Decimal::from(*i)),
        Value::UInt(u) => Ok(Decimal::from(*u)),
        Value::Null => Err(refusal(
            name,
            "missing_amount",
            format!("{what} is empty or absent"),
        )),
        Value::Float(_) => Err(refusal(
            name,
            "inexact_amount",
            format!(
                "{what} is a double, which is not exact; write amounts as strings, e.g. '12.50'"
            ),
        )),
        other => Err(refusal(
            name,
            "bad_amount",
            format!("{what} is a {}, not a decimal", type_name(other)),
        )),
    }
}

/// `[-+]digits[.digits]`, at most 28 significant digits; nothing else.
pub fn parse_decimal(t: &str) -> Option<Decimal> {
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (int_part, frac) = body.split_once('.').unwrap_or((body, ""));
    let ok = !int_part.is_empty()
        && int_part.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(body.contains('.') && frac.is_empty())
        && int_part.len() + frac.len() <= 28;
    if !ok {
        return None;
    }
    t.parse::<Decimal>().ok()
}

/// A money amount: a decimal with at most two significant decimals.
pub fn money(
    name: &str,
    v: &Value,
    what: &(impl std::fmt::Display + ?Sized),
) -> Result<Decimal, ExecutionError> {
    let d = dec(name, v, what)?;
    if d.normalize().scale() > 2 {
        return Err(refusal(
            name,
            "amount_precision",
            format!("{what} has more than two decimals"),
        ));
    }
    Ok(d)
}

fn places(name: &str, v: &Value) -> Result<u32, ExecutionError> {
    let p = int(name, v, "places")?;
    u32::try_from(p)
        .ok()
        .filter(|p| *p <= 28)
        .ok_or_else(|| refusal(name, "bad_argument", "places must be 0 to 28"))
}

fn round(
    name: &str,
    x: Decimal,
    places_v: &Value,
    mode: &Value,
) -> Result<Decimal, ExecutionError> {
    let p = places(name, places_v)?;
    let strategy = match text(name, mode, "mode")? {
        "half_up" => RoundingStrategy::MidpointAwayFromZero,
        "half_even" => RoundingStrategy::MidpointNearestEven,
        "half_down" => RoundingStrategy::MidpointTowardZero,
        "down" => RoundingStrategy::ToZero,
        "up" => RoundingStrategy::AwayFromZero,
        "floor" => RoundingStrategy::ToNegativeInfinity,
        "ceiling" => RoundingStrategy::ToPositiveInfinity,
        other => {
            return Err(refusal(
                name,
                "bad_argument",
                format!(
                    "unknown rounding mode `{other}`; use half_up, half_even, half_down, down, up, floor or ceiling"
                ),
            ));
        }
    };
    let mut r = x.round_dp_with_strategy(p, strategy);
    r.rescale(p);
    Ok(r)
}

fn thousands(plain: &str) -> String {
    let (sign, rest) = plain.strip_prefix('-').map_or(("", plain), |r| ("-", r));
    let (int_part, frac) = rest
        .split_once('.')
        .map_or((rest, None), |(i, f)| (i, Some(f)));
    let mut out = String::from(sign);
    for (i, c) in int_part.chars().enumerate() {
        if i > 0 && (int_part.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// A string argument.
pub fn text<'a>(name: &str, v: &'a Value, what: &str) -> Result<&'a str, ExecutionError> {
    match v {
        Value::String(t) => Ok(t.as_str()),
        other => Err(refusal(
            name,
            "bad_argument",
            format!("{what} is a {}, not a string", type_name(other)),
        )),
    }
}

/// An integer argument (an int, a uint, or a string of digits).
pub fn int(name: &str, v: &Value, what: &str) -> Result<i64, ExecutionError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::UInt(u) => {
            i64::try_from(*u).map_err(|_| refusal(name, "overflow", format!("{what} is too large")))
        }
        Value::String(t) => t
            .trim()
            .parse()
            .map_err(|_| refusal(name, "bad_argument", format!("{what} is not an integer"))),
        other => Err(refusal(
            name,
            "bad_argument",
            format!("{what} is a {}, not an int", type_name(other)),
        )),
    }
}

fn list<'a>(name: &str, v: &'a Value, what: &str) -> Result<&'a [Value], ExecutionError> {
    match v {
        Value::List(l) if l.len() <= MAX_LIST => Ok(l.as_slice()),
        Value::List(_) => Err(refusal(
            name,
            "too_large",
            format!("{what} has more than {MAX_LIST} elements"),
        )),
        Value::Null => Ok(&[]),
        other => Err(refusal(
            name,
            "bad_argument",
            format!("{what} is a {}, not a list", type_name(other)),
        )),
    }
}

fn key(name: &str, v: &Value) -> Result<Key, ExecutionError> {
    match v {
        Value::String(t) => Ok(Key::String(Arc::clone(t))),
        Value::Int(i) => Ok(Key::Int(*i)),
        Value::UInt(u) => Ok(Key::Uint(*u)),
        Value::Bool(b) => Ok(Key::Bool(*b)),
        other => Err(refusal(
            name,
            "bad_argument",
            format!("a {} cannot be a map key", type_name(other)),
        )),
    }
}

fn field_of(name: &str, row: &Value, field: &str, i: usize) -> Result<Value, ExecutionError> {
    match row {
        Value::Map(m) => Ok(m
            .get(&KeyRef::String(field))
            .cloned()
            .unwrap_or(Value::Null)),
        other => Err(refusal(
            name,
            "bad_argument",
            format!("list[{i}] is a {}, not a map", type_name(other)),
        )),
    }
}

fn scalar_text(
    name: &str,
    v: &Value,
    what: &(impl std::fmt::Display + ?Sized),
    out: &mut String,
) -> Result<(), ExecutionError> {
    use std::fmt::Write;
    match v {
        Value::String(t) => out.push_str(t),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Null => {}
        other => {
            return Err(refusal(
                name,
                "bad_argument",
                format!(
                    "{what} is a {}; only strings, ints and bools are joined",
                    type_name(other)
                ),
            ));
        }
    }
    Ok(())
}

/// `null`, `""`, `[]` and `{}` are empty.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(t) => t.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.map.is_empty(),
        _ => false,
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => match (parse_decimal(x), parse_decimal(y)) {
            (Some(dx), Some(dy)) => Some(dx.cmp(&dy)),
            _ => Some(x.cmp(y)),
        },
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) => Some(Ordering::Less),
        (_, Value::Null) => Some(Ordering::Greater),
        _ => a.partial_cmp(b),
    }
}
