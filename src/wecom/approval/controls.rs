//! Form controls: one [`FormControl`] per `apply_data.contents[]` item, by control type.
//! Values that carry data (numbers, money, timestamps) are strict: unreadable →
//! [`NormaliseError::InvalidControl`] naming the control and the field, never the value.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rust_decimal::Decimal;
use serde_json::Value;

use super::scalars::{
    code, flag, integer, items, lang_text, parse_decimal, render, text, timestamp, zone,
};
use super::types::{
    AttendancePeriod, ContactDept, ContactUser, DayItem, FormControl, FormValue,
    RelatedApprovalItem, SelectorOption,
};
use super::{MAX_TABLE_DEPTH, NormaliseError};

/// At most this many characters of a control id are quoted in an error.
pub(super) const MAX_ID_IN_ERROR: usize = 96;

pub(super) fn controls(
    list: &Value,
    tz: &TimeZone,
    depth: usize,
) -> Result<Vec<FormControl>, NormaliseError> {
    let mut out = Vec::new();
    for item in items(Some(list)) {
        if let Some(control) = control(item, tz, depth)? {
            out.push(control);
        }
    }
    Ok(out)
}

/// Reads one `contents[]` item; `None` for `Tips`.
fn control(
    item: &Value,
    tz: &TimeZone,
    depth: usize,
) -> Result<Option<FormControl>, NormaliseError> {
    let Value::Object(fields) = item else {
        return Ok(Some(FormControl {
            id: String::new(),
            title: String::new(),
            control: String::new(),
            hidden: false,
            value: FormValue::Unknown {
                control: String::new(),
                raw: item.clone(),
            },
        }));
    };
    let kind = text(fields.get("control"));
    if kind == "Tips" {
        return Ok(None);
    }
    let id = text(fields.get("id"));
    let ctx = Ctx { id: &id, tz };
    let raw = fields.get("value").unwrap_or(&Value::Null);
    let value = match kind.as_str() {
        "Text" | "Textarea" => FormValue::Text {
            text: text(raw.get("text")),
        },
        "Number" => FormValue::Number {
            value: ctx.decimal(raw.get("new_number"), "new_number")?,
        },
        "Money" => FormValue::Money {
            amount: ctx.decimal(raw.get("new_money"), "new_money")?,
        },
        "Date" => {
            // The doc's JSON example omits the `date` wrapper its table shows; accept both.
            let date = raw.get("date").filter(|d| d.is_object()).unwrap_or(raw);
            let zone = zone(date.get("timezone_info"), tz);
            let instant = ctx.time(date.get("s_timestamp"), "s_timestamp")?;
            let rendered = instant
                .map(|ts| ctx.render(ts, &zone, "s_timestamp"))
                .transpose()?;
            let (at, day) = rendered.unzip();
            FormValue::Date {
                kind: text(date.get("type")),
                at,
                date: day,
                timestamp: instant.map(|ts| ts.as_second()),
            }
        }
        "DateRange" => {
            let range = raw
                .get("date_range")
                .filter(|d| d.is_object())
                .unwrap_or(raw);
            let r = ctx.range(range)?;
            FormValue::DateRange {
                kind: r.range_kind,
                begin: r.begin,
                end: r.end,
                begin_timestamp: r.begin_timestamp,
                end_timestamp: r.end_timestamp,
                duration_secs: r.duration_secs,
            }
        }
        "Selector" => selector(raw.get("selector")),
        "Contact" => FormValue::Contact {
            users: items(raw.get("members"))
                .map(|m| ContactUser {
                    user_id: text(m.get("userid")),
                    name: text(m.get("name")),
                })
                .collect(),
            departments: items(raw.get("departments"))
                .map(|d| ContactDept {
                    id: text(d.get("openapi_id")),
                    name: text(d.get("name")),
                })
                .collect(),
        },
        "File" => FormValue::File {
            file_ids: items(raw.get("files"))
                .map(|f| text(f.get("file_id")))
                .filter(|f| !f.is_empty())
                .collect(),
        },
        "Table" => {
            if depth >= MAX_TABLE_DEPTH {
                return Err(ctx.invalid("children", "tables nested too deeply"));
            }
            let mut rows = Vec::new();
            for row in items(raw.get("children")) {
                let cells = match row.get("list") {
                    Some(list) => controls(list, tz, depth + 1)?,
                    None => Vec::new(),
                };
                rows.push(cells);
            }
            FormValue::Table { rows }
        }
        "Vacation" => {
            let vacation = raw.get("vacation").unwrap_or(&Value::Null);
            let option = items(vacation.get("selector").and_then(|s| s.get("options"))).next();
            let attendance = vacation.get("attendance").unwrap_or(&Value::Null);
            FormValue::Vacation {
                type_key: text(option.and_then(|o| o.get("key"))),
                type_name: lang_text(option.and_then(|o| o.get("value"))),
                period: ctx.attendance(attendance)?,
            }
        }
        "Attendance" => {
            let attendance = raw.get("attendance").unwrap_or(&Value::Null);
            FormValue::Attendance {
                kind: code(attendance.get("type")),
                period: ctx.attendance(attendance)?,
            }
        }
        "PunchCorrection" => {
            let pc = raw.get("punch_correction").unwrap_or(&Value::Null);
            FormValue::PunchCorrection {
                state: text(pc.get("state")),
                time: ctx.rfc3339(pc.get("time"), "time", tz)?,
                day: ctx
                    .rendered(pc.get("daymonthyear"), "daymonthyear", tz)?
                    .map(|(_, day)| day),
            }
        }
        "Location" => {
            let loc = raw.get("location").unwrap_or(&Value::Null);
            FormValue::Location {
                latitude: text(loc.get("latitude")),
                longitude: text(loc.get("longitude")),
                title: text(loc.get("title")),
                address: text(loc.get("address")),
                time: ctx.rfc3339(loc.get("time"), "time", tz)?,
            }
        }
        "RelatedApproval" => {
            let mut related = Vec::new();
            for item in items(raw.get("related_approval")) {
                related.push(RelatedApprovalItem {
                    sp_no: text(item.get("sp_no")),
                    template_name: lang_text(item.get("template_names")),
                    status: code(item.get("sp_status")),
                    name: text(item.get("name")),
                    create_time: ctx.rfc3339(item.get("create_time"), "create_time", tz)?,
                });
            }
            FormValue::RelatedApproval { items: related }
        }
        "Formula" => {
            let raw_text = text(raw.get("formula").and_then(|f| f.get("value")));
            FormValue::Formula {
                value: parse_decimal(&raw_text).ok().flatten(),
                raw: raw_text,
            }
        }
        "BankAccount" => {
            let account = raw.get("bank_account").unwrap_or(&Value::Null);
            let bank = account.get("bank").unwrap_or(&Value::Null);
            FormValue::BankAccount {
                account_type: code(account.get("account_type")),
                account_name: text(account.get("account_name")),
                account_number: text(account.get("account_number")),
                bank_name: text(bank.get("bank_alias")),
                bank_code: text(bank.get("bank_alias_code")),
                branch_name: text(bank.get("bank_branch_name")),
                branch_id: text(bank.get("bank_branch_id")),
                province: text(bank.get("province")),
                city: text(bank.get("city")),
                remark: text(account.get("remark")),
            }
        }
        "PhoneNumber" => FormValue::PhoneNumber { raw: raw.clone() },
        _ => FormValue::Unknown {
            control: kind.clone(),
            raw: raw.clone(),
        },
    };
    Ok(Some(FormControl {
        title: lang_text(fields.get("title")),
        hidden: flag(fields.get("hidden")),
        control: kind,
        id,
        value,
    }))
}

fn selector(selector: Option<&Value>) -> FormValue {
    let selector = selector.unwrap_or(&Value::Null);
    FormValue::Selector {
        multi: text(selector.get("type")) == "multi",
        options: items(selector.get("options"))
            .map(|o| SelectorOption {
                key: text(o.get("key")),
                text: lang_text(o.get("value")),
            })
            .collect(),
    }
}

/// The control being read: its id for errors and the caller's zone.
struct Ctx<'a> {
    id: &'a str,
    tz: &'a TimeZone,
}

impl Ctx<'_> {
    fn invalid(&self, field: &'static str, reason: &'static str) -> NormaliseError {
        NormaliseError::InvalidControl {
            control_id: self.id.chars().take(MAX_ID_IN_ERROR).collect(),
            field,
            reason,
        }
    }

    fn decimal(
        &self,
        value: Option<&Value>,
        field: &'static str,
    ) -> Result<Option<Decimal>, NormaliseError> {
        let s = match value {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(self.invalid(field, "not a decimal string")),
        };
        parse_decimal(&s).map_err(|reason| self.invalid(field, reason))
    }

    fn time(
        &self,
        value: Option<&Value>,
        field: &'static str,
    ) -> Result<Option<Timestamp>, NormaliseError> {
        timestamp(value).map_err(|reason| self.invalid(field, reason))
    }

    fn render(
        &self,
        ts: Timestamp,
        zone: &TimeZone,
        field: &'static str,
    ) -> Result<(String, String), NormaliseError> {
        render(ts, zone).map_err(|reason| self.invalid(field, reason))
    }

    /// `value` read as a timestamp and rendered in `zone`: `(RFC 3339, YYYY-MM-DD)`.
    fn rendered(
        &self,
        value: Option<&Value>,
        field: &'static str,
        zone: &TimeZone,
    ) -> Result<Option<(String, String)>, NormaliseError> {
        self.time(value, field)?
            .map(|ts| self.render(ts, zone, field))
            .transpose()
    }

    /// `value` read as a timestamp, RFC 3339 in `zone`.
    fn rfc3339(
        &self,
        value: Option<&Value>,
        field: &'static str,
        zone: &TimeZone,
    ) -> Result<Option<String>, NormaliseError> {
        Ok(self.rendered(value, field, zone)?.map(|(at, _)| at))
    }

    fn seconds(
        &self,
        value: Option<&Value>,
        field: &'static str,
    ) -> Result<Option<i64>, NormaliseError> {
        integer(value).map_err(|reason| self.invalid(field, reason))
    }

    /// A normalised `date_range`: the range fields of an [`AttendancePeriod`], its day split
    /// left empty (a `DateRange` control has none; [`Self::attendance`] adds it).
    fn range(&self, range: &Value) -> Result<AttendancePeriod, NormaliseError> {
        let zone = zone(range.get("timezone_info"), self.tz);
        let begin = self.time(range.get("new_begin"), "new_begin")?;
        let end = self.time(range.get("new_end"), "new_end")?;
        Ok(AttendancePeriod {
            range_kind: text(range.get("type")),
            begin: begin
                .map(|ts| self.render(ts, &zone, "new_begin"))
                .transpose()?
                .map(|r| r.0),
            end: end
                .map(|ts| self.render(ts, &zone, "new_end"))
                .transpose()?
                .map(|r| r.0),
            begin_timestamp: begin.map(|ts| ts.as_second()),
            end_timestamp: end.map(|ts| ts.as_second()),
            duration_secs: self.seconds(range.get("new_duration"), "new_duration")?,
            day_items: Vec::new(),
            slice_duration_secs: None,
        })
    }

    /// A normalised `attendance` object (also used inside `vacation`).
    fn attendance(&self, attendance: &Value) -> Result<AttendancePeriod, NormaliseError> {
        let date_range = attendance.get("date_range").unwrap_or(&Value::Null);
        let zone = zone(date_range.get("timezone_info"), self.tz);
        let range = self.range(date_range)?;
        let slice = attendance.get("slice_info").unwrap_or(&Value::Null);
        let mut day_items = Vec::new();
        for item in items(slice.get("day_items")) {
            let (at, date) = self
                .rendered(item.get("daytime"), "daytime", &zone)?
                .unzip();
            day_items.push(DayItem {
                date,
                at,
                duration_secs: self.seconds(item.get("duration"), "duration")?,
            });
        }
        Ok(AttendancePeriod {
            day_items,
            slice_duration_secs: self.seconds(slice.get("duration"), "duration")?,
            ..range
        })
    }
}
