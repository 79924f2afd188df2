//! The one filter parser shared by records, summary, trend and export.
//!
//! Filters arrive as a JSON object; every key is typed and checked here. The
//! extension reads the parsed values through IMMUTABLE accessor functions
//! (`_filter_timestamp`, `_filter_text`, `_filter_uuid`, `_filter_success`,
//! `_filter_rollup_compatible`) that one static SQL predicate compares with
//! the columns: values never become SQL text.

use crate::validate::json_kind;
use chrono::{NaiveDate, NaiveTime};
use serde_json::{Map, Value};
use std::fmt;

/// Microseconds between the Unix epoch and Postgres' epoch (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;
pub const MAX_SEARCH_CHARS: usize = 200;
pub const MAX_TEXT_FILTER_CHARS: usize = 1000;
/// Deepest nesting of arrays and objects accepted in a filter document (the
/// document itself is level 1). Filters are flat, so anything nested under a
/// key is a type error naming that key; documents nested deeper than this are
/// refused as a whole (key `filters`), and the extension can refuse their text
/// with `validate::json_text("filters", text, MAX_FILTERS_DEPTH)` before
/// serde_json, which gives up at 128 levels, ever parses it.
pub const MAX_FILTERS_DEPTH: usize = 32;

pub const KNOWN_KEYS: &[&str] = &[
    "start_date",
    "end_date",
    "user_id",
    "agent_id",
    "framework",
    "provider",
    "model",
    "message_type",
    "success",
    "search",
    "after_timestamp",
    "after_id",
];

/// The filter keys the daily rollups can serve: `agent_performance_metrics`
/// keeps one row per (user_id, agent_id, framework, provider, date), so only
/// these keys (and date bounds) may be answered from it. The one list of
/// them; `Filters::rollup_compatible` reads it.
/// The date range keys.
pub const DATE_KEYS: &[&str] = &["start_date", "end_date"];

pub const ROLLUP_KEYS: &[&str] = &[
    "start_date",
    "end_date",
    "user_id",
    "agent_id",
    "framework",
    "provider",
];

#[derive(Debug, PartialEq, Eq)]
pub struct FilterError {
    pub key: String,
    pub problem: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid filter \"{}\": {}", self.key, self.problem)
    }
}

fn error(key: &str, problem: impl Into<String>) -> FilterError {
    FilterError {
        key: key.to_string(),
        problem: problem.into(),
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filters {
    /// Inclusive lower bound, Postgres microseconds.
    pub start: Option<i64>,
    /// Exclusive upper bound, Postgres microseconds (a plain date means the
    /// start of the following day).
    pub end: Option<i64>,
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub framework: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub message_type: Option<String>,
    pub success: Option<bool>,
    /// The ILIKE pattern (`%…%`, metacharacters escaped), not the raw text.
    pub search: Option<String>,
    /// Keyset pagination: rows strictly after (older than) this position in
    /// `timestamp DESC, id DESC` order.
    pub after_timestamp: Option<i64>,
    pub after_id: Option<String>,
}

impl Filters {
    pub fn parse(value: Option<&Value>) -> Result<Filters, FilterError> {
        let object = match value {
            None | Some(Value::Null) => return Ok(Filters::default()),
            Some(value @ Value::Object(object)) => {
                crate::validate::json_depth("filters", value, MAX_FILTERS_DEPTH)
                    .map_err(|e| error("filters", e.problem))?;
                object
            }
            Some(other) => {
                return Err(error(
                    "filters",
                    format!("must be a JSON object, got {}", json_kind(other)),
                ))
            }
        };
        if let Some(unknown) = object.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(error(
                unknown,
                format!("unknown key; known keys are {}", KNOWN_KEYS.join(", ")),
            ));
        }
        let filters = Filters {
            start: date_bound(object, "start_date", DayEdge::Start)?,
            end: date_bound(object, "end_date", DayEdge::EndInclusive)?,
            user_id: uuid_value(object, "user_id")?,
            agent_id: text(object, "agent_id")?,
            framework: text(object, "framework")?.map(|s| s.to_lowercase()),
            provider: text(object, "provider")?.map(|s| s.to_lowercase()),
            model: text(object, "model")?.map(|s| s.to_lowercase()),
            message_type: text(object, "message_type")?.map(|s| s.to_lowercase()),
            success: boolean(object, "success")?,
            search: search_pattern(object)?,
            after_timestamp: date_bound(object, "after_timestamp", DayEdge::Start)?,
            after_id: uuid_value(object, "after_id")?,
        };
        if filters.after_id.is_some() && filters.after_timestamp.is_none() {
            return Err(error("after_id", "needs after_timestamp as well"));
        }
        Ok(filters)
    }

    /// The keys that filter something (a `null` or `""` value filters
    /// nothing), in `KNOWN_KEYS` order.
    pub fn keys(&self) -> Vec<&'static str> {
        let present = [
            ("start_date", self.start.is_some()),
            ("end_date", self.end.is_some()),
            ("user_id", self.user_id.is_some()),
            ("agent_id", self.agent_id.is_some()),
            ("framework", self.framework.is_some()),
            ("provider", self.provider.is_some()),
            ("model", self.model.is_some()),
            ("message_type", self.message_type.is_some()),
            ("success", self.success.is_some()),
            ("search", self.search.is_some()),
            ("after_timestamp", self.after_timestamp.is_some()),
            ("after_id", self.after_id.is_some()),
        ];
        present
            .into_iter()
            .filter_map(|(key, set)| set.then_some(key))
            .collect()
    }

    /// Whether only keys in `ROLLUP_KEYS` filter anything, so whole days may
    /// be read from `agent_performance_metrics`.
    pub fn rollup_compatible(&self) -> bool {
        self.keys().iter().all(|key| ROLLUP_KEYS.contains(key))
    }

    /// Whether only the date range filters anything, so system-wide daily
    /// totals (which keep no user, agent, framework or provider) may serve.
    pub fn dates_only(&self) -> bool {
        self.keys().iter().all(|key| DATE_KEYS.contains(key))
    }
}

/// A string value; `null` and "" mean "not filtered" (what a UI sends for "All").
fn text(object: &Map<String, Value>, key: &str) -> Result<Option<String>, FilterError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.chars().count() > MAX_TEXT_FILTER_CHARS {
                return Err(error(
                    key,
                    format!("longer than {MAX_TEXT_FILTER_CHARS} characters"),
                ));
            }
            if s.contains('\0') {
                return Err(error(key, "contains a NUL character"));
            }
            Ok((!s.is_empty()).then(|| s.to_string()))
        }
        Some(other) => Err(error(key, format!("must be a string, got {}", json_kind(other)))),
    }
}

fn uuid_value(object: &Map<String, Value>, key: &str) -> Result<Option<String>, FilterError> {
    let Some(s) = text(object, key)? else {
        return Ok(None);
    };
    uuid::Uuid::parse_str(&s)
        .map(|u| Some(u.hyphenated().to_string()))
        .map_err(|_| error(key, format!("must be a UUID, got {s:?}")))
}

fn boolean(object: &Map<String, Value>, key: &str) -> Result<Option<bool>, FilterError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(error(
            key,
            format!("must be a boolean (true or false), got {}", json_kind(other)),
        )),
    }
}

fn search_pattern(object: &Map<String, Value>) -> Result<Option<String>, FilterError> {
    let Some(s) = text(object, "search")? else {
        return Ok(None);
    };
    if s.chars().count() > MAX_SEARCH_CHARS {
        return Err(error(
            "search",
            format!("longer than {MAX_SEARCH_CHARS} characters"),
        ));
    }
    let mut pattern = String::with_capacity(s.len() + 2);
    pattern.push('%');
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push('%');
    Ok(Some(pattern))
}

#[derive(Clone, Copy)]
enum DayEdge {
    Start,
    /// A plain date as an upper bound includes the whole day.
    EndInclusive,
}

fn date_bound(object: &Map<String, Value>, key: &str, edge: DayEdge) -> Result<Option<i64>, FilterError> {
    let Some(s) = text(object, key)? else {
        return Ok(None);
    };
    parse_date_or_timestamp(&s, edge).map(Some).ok_or_else(|| {
        error(
            key,
            format!("must be an ISO date (2024-12-31) or timestamp (2024-12-31T23:59:59Z), got {s:?}"),
        )
    })
}

/// A plain date, or a timestamp in the forms Postgres prints and
/// `timestamptz` input accepts in practice: `2024-12-01`,
/// `2024-12-01T00:37:00Z`, `2024-12-01 00:37:00+00`,
/// `2024-12-01 00:37:00.123456+01`, offsets `+01`, `+0100`, `+01:00`,
/// `-05`, `+05:30:15`, `Z`, `UTC` or `GMT` (optionally after a space), `T` or
/// a space between date and time, seconds and fractional seconds optional
/// (rounded to microseconds half to even, as Postgres does), `24:00:00` as
/// the next midnight. A timestamp without an offset is taken as UTC (as the
/// rollup days are), not in the session's time zone.
fn parse_date_or_timestamp(s: &str, edge: DayEdge) -> Option<i64> {
    let mut cursor = Cursor(s.as_bytes());
    let year = cursor.digits(4, 4)?;
    cursor.expect(b'-')?;
    let month = cursor.digits(1, 2)?;
    cursor.expect(b'-')?;
    let day = cursor.digits(1, 2)?;
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month as u32, day as u32)?;
    if cursor.is_empty() {
        let day = match edge {
            DayEdge::Start => date,
            DayEdge::EndInclusive => date.succ_opt()?,
        };
        return day_start_micros_checked(day);
    }
    if !(cursor.eat(b'T') || cursor.eat(b't') || cursor.eat(b' ')) {
        return None;
    }
    while cursor.eat(b' ') {}
    let hour = cursor.digits(1, 2)?;
    cursor.expect(b':')?;
    let minute = cursor.digits(2, 2)?;
    let mut second = 0;
    let mut micros = 0;
    if cursor.eat(b':') {
        second = cursor.digits(2, 2)?;
        if cursor.eat(b'.') {
            micros = cursor.fraction_micros()?;
        }
    }
    let valid = (hour < 24 && minute < 60 && second <= 60)
        || (hour == 24 && minute == 0 && second == 0 && micros == 0);
    if !valid {
        return None;
    }
    let offset_seconds = cursor.offset_seconds()?;
    if !cursor.is_empty() {
        return None;
    }
    let local = ((hour * 60 + minute) * 60 + second) as i64 * 1_000_000 + micros;
    day_start_micros_checked(date)?
        .checked_add(local)?
        .checked_sub(offset_seconds * 1_000_000)
}

fn day_start_micros_checked(date: NaiveDate) -> Option<i64> {
    date.and_time(NaiveTime::MIN)
        .and_utc()
        .timestamp_micros()
        .checked_sub(PG_EPOCH_OFFSET_MICROS)
}

/// A tiny scanner over the bytes of a timestamp.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn eat(&mut self, byte: u8) -> bool {
        match self.0.split_first() {
            Some((&first, rest)) if first == byte => {
                self.0 = rest;
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    fn take_digits(&mut self) -> &[u8] {
        let n = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        let (digits, rest) = self.0.split_at(n);
        self.0 = rest;
        digits
    }

    /// Between `min` and `max` ASCII digits (no more follow), as a number.
    fn digits(&mut self, min: usize, max: usize) -> Option<u64> {
        let digits = self.take_digits();
        if digits.len() < min || digits.len() > max {
            return None;
        }
        Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
    }

    /// The digits after a decimal point as microseconds, rounded half to even.
    fn fraction_micros(&mut self) -> Option<i64> {
        let digits = self.take_digits();
        if digits.is_empty() {
            return None;
        }
        let mut micros = 0i64;
        for i in 0..6 {
            micros = micros * 10 + digits.get(i).map_or(0, |d| i64::from(d - b'0'));
        }
        let rest = digits.get(6..).unwrap_or_default();
        let round_up = match rest.split_first() {
            Some((&first, tail)) => {
                first > b'5' || first == b'5' && (tail.iter().any(|&d| d != b'0') || micros % 2 == 1)
            }
            None => false,
        };
        Some(micros + i64::from(round_up))
    }

    /// An optional zone: nothing (UTC), `Z`, `UTC`, `GMT` or a numeric
    /// offset `±H`, `±HH`, `±HHMM`, `±HH:MM`, `±HH:MM:SS`, `±HHMMSS`, in
    /// seconds east of UTC. One space may come before it.
    fn offset_seconds(&mut self) -> Option<i64> {
        if self.is_empty() {
            return Some(0);
        }
        self.eat(b' ');
        for name in [&b"Z"[..], b"UTC", b"GMT"] {
            if self.0.eq_ignore_ascii_case(name) {
                self.0 = &[];
                return Some(0);
            }
        }
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return None;
        };
        let digits = self.take_digits();
        let number = |d: &[u8]| d.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        let (hours, mut minutes, mut seconds) = match digits.len() {
            1 | 2 => (number(digits), 0, 0),
            4 => (number(&digits[..2]), number(&digits[2..]), 0),
            6 => (number(&digits[..2]), number(&digits[2..4]), number(&digits[4..])),
            _ => return None,
        };
        if digits.len() <= 2 && self.eat(b':') {
            minutes = self.digits(2, 2)? as i64;
            if self.eat(b':') {
                seconds = self.digits(2, 2)? as i64;
            }
        }
        if hours > 15 || minutes > 59 || seconds > 59 {
            return None;
        }
        Some(sign * (hours * 3600 + minutes * 60 + seconds))
    }
}

/// Postgres microseconds for a UTC calendar day's midnight.
pub fn day_start_micros(date: NaiveDate) -> i64 {
    date.and_time(NaiveTime::MIN).and_utc().timestamp_micros() - PG_EPOCH_OFFSET_MICROS
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Filters, FilterError> {
        Filters::parse(Some(&v))
    }

    fn micros(date: &str) -> i64 {
        day_start_micros(NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap())
    }

    #[test]
    fn empty_and_null_filter_nothing() {
        assert_eq!(parse(json!({})).unwrap(), Filters::default());
        assert_eq!(Filters::parse(None).unwrap(), Filters::default());
        assert_eq!(
            parse(json!({"provider": null, "agent_id": ""})).unwrap(),
            Filters::default()
        );
        assert!(Filters::default().keys().is_empty());
        assert!(Filters::default().rollup_compatible());
    }

    #[test]
    fn plain_end_date_includes_the_whole_day() {
        let f = parse(json!({"start_date": "2024-03-01", "end_date": "2024-03-31"})).unwrap();
        assert_eq!(f.start, Some(micros("2024-03-01")));
        assert_eq!(f.end, Some(micros("2024-04-01")));
    }

    #[test]
    fn timestamp_end_date_is_exclusive_and_offsets_apply() {
        let f = parse(json!({"end_date": "2024-03-31T10:00:00+02:00", "start_date": "2024-03-01 00:00:00"}))
            .unwrap();
        assert_eq!(f.end, Some(micros("2024-03-31") + 8 * 3_600_000_000));
        assert_eq!(f.start, Some(micros("2024-03-01")));
        let z = parse(json!({"end_date": "2024-03-31T00:00:00.5Z"})).unwrap();
        assert_eq!(z.end, Some(micros("2024-03-31") + 500_000));
    }

    fn at(key: &str, value: &str) -> Option<i64> {
        let f = parse(json!({ key: value })).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        match key {
            "start_date" => f.start,
            "end_date" => f.end,
            _ => f.after_timestamp,
        }
    }

    const HOUR: i64 = 3_600_000_000;
    const MINUTE: i64 = 60_000_000;

    #[test]
    fn timestamps_in_the_forms_postgres_prints() {
        let day = micros("2024-12-01");
        let t = day + 37 * MINUTE;
        for key in ["start_date", "end_date", "after_timestamp"] {
            let cases: &[(&str, i64)] = &[
                ("2024-12-01T00:37:00Z", t),
                ("2024-12-01T00:37:00z", t),
                ("2024-12-01t00:37:00Z", t),
                ("2024-12-01 00:37:00+00", t),
                ("2024-12-01 00:37:00-00", t),
                ("2024-12-01 00:37:00+00:00", t),
                ("2024-12-01 00:37:00 UTC", t),
                ("2024-12-01 00:37:00 +00", t),
                ("2024-12-01T00:37:00", t),
                ("2024-12-01 00:37:00", t),
                ("2024-12-01 00:37", t),
                ("2024-12-01T00:37Z", t),
                ("2024-12-01 0:37:00", t),
                ("2024-12-01 00:37:00.123456+01", t + 123_456 - HOUR),
                ("2024-12-01 00:37:00.5+0100", t + 500_000 - HOUR),
                ("2024-12-01T00:37:00.000001+01:00", t + 1 - HOUR),
                ("2024-12-01 00:37:00-05", t + 5 * HOUR),
                ("2024-12-01 00:37:00-0530", t + 5 * HOUR + 30 * MINUTE),
                ("2024-12-01 00:37:00+05:30", t - 5 * HOUR - 30 * MINUTE),
                ("2024-12-01 00:37:00+1", t - HOUR),
                ("2024-12-01 00:37:00+00:53:28", t - 53 * MINUTE - 28_000_000),
                ("2024-12-01 00:37:00.1234564Z", t + 123_456),
                ("2024-12-01 00:37:00.1234565Z", t + 123_456),
                ("2024-12-01 00:37:00.1234575Z", t + 123_458),
                ("2024-12-01 00:37:00.12345651Z", t + 123_457),
                ("2024-12-01 00:37:00.9999995Z", t + 1_000_000),
                ("2024-11-30 24:00:00", day),
                ("2024-12-01 00:36:60", t),
                ("2024-12-1 00:37:00", t),
            ];
            for (text, expected) in cases {
                assert_eq!(at(key, text), Some(*expected), "{key}: {text}");
            }
        }
    }

    #[test]
    fn plain_dates_keep_their_meaning() {
        assert_eq!(at("start_date", "2024-12-01"), Some(micros("2024-12-01")));
        assert_eq!(at("after_timestamp", "2024-12-01"), Some(micros("2024-12-01")));
        assert_eq!(at("end_date", "2024-12-01"), Some(micros("2024-12-02")));
        assert_eq!(at("end_date", "2024-12-31"), Some(micros("2025-01-01")));
        // A timestamp end at midnight is exclusive: it does not add a day.
        assert_eq!(
            at("end_date", "2024-12-01 00:00:00+00"),
            Some(micros("2024-12-01"))
        );
        assert_eq!(at("end_date", " 2024-12-01 "), Some(micros("2024-12-02")));
    }

    #[test]
    fn malformed_timestamps_name_the_key() {
        for bad in [
            "2024-12-01T",
            "2024-12-01 T00:37",
            "2024-12-01X00:37:00",
            "2024-12-01T00",
            "2024-12-01T00:37:00.",
            "2024-12-01T00:37:00.5.5",
            "2024-12-01T25:00:00",
            "2024-12-01T24:00:01",
            "2024-12-01T00:60:00",
            "2024-12-01T00:37:61",
            "2024-12-01T00:37:00+",
            "2024-12-01T00:37:00+16",
            "2024-12-01T00:37:00+01:60",
            "2024-12-01T00:37:00+123",
            "2024-12-01T00:37:00+01:0",
            "2024-12-01T00:37:00ZZ",
            "2024-12-01T00:37:00 PST",
            "2024-12-01T00:37:00Z junk",
            "2024-13-01",
            "2024-02-30T00:00:00Z",
            "24-12-01",
            "20241201",
            "2024/12/01",
            "+2024-12-01",
            "yesterday",
            "１２０２４-12-01",
        ] {
            for key in ["start_date", "end_date", "after_timestamp"] {
                let err = parse(json!({ key: bad })).unwrap_err();
                assert_eq!(err.key, key, "{bad:?}");
                assert!(err.problem.contains("must be an ISO date"), "{bad:?}: {err}");
            }
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key() {
        let cases = [
            (json!({"user": "x"}), "user"),
            (json!({"success": "true"}), "success"),
            (json!({"user_id": "not-a-uuid"}), "user_id"),
            (json!({"user_id": 5}), "user_id"),
            (json!({"start_date": "yesterday"}), "start_date"),
            (json!({"end_date": "2024-02-30"}), "end_date"),
            (json!({"provider": ["openai"]}), "provider"),
            (json!({"search": {"a": 1}}), "search"),
            (
                json!({"after_id": "00000000-0000-0000-0000-000000000000"}),
                "after_id",
            ),
            (json!(["provider"]), "filters"),
        ];
        for (value, key) in cases {
            let err = parse(value.clone()).unwrap_err();
            assert_eq!(err.key, key, "{value}");
            assert!(err.to_string().contains(key));
        }
    }

    #[test]
    fn values_are_normalised() {
        let f = parse(json!({
            "agent_id": " x'; DROP TABLE t; -- ",
            "provider": "OpenAI",
            "success": false,
            "search": "50%_off\\",
            "user_id": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"
        }))
        .unwrap();
        assert_eq!(f.agent_id.as_deref(), Some("x'; DROP TABLE t; --"));
        assert_eq!(f.provider.as_deref(), Some("openai"));
        assert_eq!(f.search.as_deref(), Some("%50\\%\\_off\\\\%"));
        assert_eq!(f.user_id.as_deref(), Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
        assert_eq!(f.success, Some(false));
        assert_eq!(f.keys(), ["user_id", "agent_id", "provider", "success", "search"]);
        assert!(!f.rollup_compatible());
    }

    #[test]
    fn keyset_position() {
        let f = parse(json!({"after_timestamp": "2024-01-01T00:00:00Z",
                             "after_id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}))
        .unwrap();
        assert_eq!(f.after_timestamp, Some(micros("2024-01-01")));
        assert_eq!(
            f.after_id.as_deref(),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        );
        assert_eq!(f.keys(), ["after_timestamp", "after_id"]);
        assert!(!f.rollup_compatible());
    }

    #[test]
    fn rollups_serve_their_keys_only() {
        let all = parse(json!({
            "start_date": "2024-01-01", "end_date": "2024-01-31T12:00:00Z",
            "user_id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "agent_id": "a",
            "framework": "langchain", "provider": "openai", "model": null, "search": ""
        }))
        .unwrap();
        assert_eq!(all.keys(), ROLLUP_KEYS);
        assert!(all.rollup_compatible());
        for (key, value) in [
            ("model", json!("gpt-4o")),
            ("message_type", json!("chat")),
            ("success", json!(true)),
            ("search", json!("x")),
            ("after_timestamp", json!("2024-01-01")),
        ] {
            let f = parse(json!({ "provider": "openai", key: value })).unwrap();
            assert!(!f.rollup_compatible(), "{key}");
        }
        assert!(ROLLUP_KEYS.iter().all(|k| KNOWN_KEYS.contains(k)));
    }

    #[test]
    fn nested_documents_are_refused_without_recursion() {
        let mut deep = json!("openai");
        for _ in 0..1000 {
            deep = json!([deep]);
        }
        let doc = json!({ "provider": deep });
        let err = parse(doc.clone()).unwrap_err();
        assert_eq!(err.key, "filters");
        assert!(err.problem.contains("the limit is 32"), "{err}");
        // Shallow nesting is a type error naming the key.
        assert_eq!(
            parse(json!({"provider": [["openai"]]})).unwrap_err().key,
            "provider"
        );
        assert_eq!(parse(json!({"nope": [["openai"]]})).unwrap_err().key, "nope");
        let text = doc.to_string();
        assert_eq!(crate::validate::json_text_depth(&text), 1001);
        assert_eq!(
            crate::validate::json_text("filters", &text, MAX_FILTERS_DEPTH)
                .unwrap_err()
                .argument,
            "filters"
        );
    }

    #[test]
    fn search_length_is_limited() {
        let long = "x".repeat(MAX_SEARCH_CHARS + 1);
        assert_eq!(parse(json!({ "search": long })).unwrap_err().key, "search");
    }
}
