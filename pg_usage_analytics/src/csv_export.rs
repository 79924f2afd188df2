//! `export_usage_csv`: one RFC 4180 CSV document of the filtered rows, bounded
//! in rows and bytes (larger exports stream with COPY over `usage_export`).

use crate::errors::raise_invalid;
use crate::filters::parse;
use crate::json_args::FiltersArg;
use pgrx::prelude::*;
use pgrx::JsonB;
use usage_analytics_core::csv::{push_record, push_timestamp_micros, Cell};

/// Rows above which `export_usage_csv` refuses and points to COPY.
pub const MAX_CSV_EXPORT_ROWS: i64 = 1_000_000;
/// Bytes of CSV above which `export_usage_csv` refuses and points to COPY;
/// checked before each row is appended, so the backend never holds more.
pub const MAX_CSV_EXPORT_BYTES: usize = 256 * 1024 * 1024;
/// Rows fetched per cursor round trip: bounded, since a row may carry up to
/// 64 KiB of metadata.
const EXPORT_BATCH_ROWS: i64 = 1_000;

fn refuse_large_export(limit: &str) -> ! {
    raise_invalid(format!(
        "export_usage_csv: the export would exceed {limit}; narrow the filters or stream the rows with \
         COPY (SELECT * FROM usage_analytics.usage_export('<filters>')) TO STDOUT WITH (FORMAT csv, HEADER)"
    ))
}

/// The export's columns and whether each is free text (neutralised against
/// spreadsheet formulas) or a value Postgres formatted.
/// How many of EXPORT_COLUMNS a 0.1.0 table has.
const EXPORT_COLUMNS_0_1: usize = 18;
const EXPORT_COLUMNS: &[(&str, Cell)] = &[
    ("id", Cell::Value),
    ("user_id", Cell::Value),
    ("agent_id", Cell::Text),
    ("agent_name", Cell::Text),
    ("framework", Cell::Text),
    ("provider", Cell::Text),
    ("message_type", Cell::Text),
    ("input_tokens", Cell::Value),
    ("output_tokens", Cell::Value),
    ("total_tokens", Cell::Value),
    ("cost_usd", Cell::Value),
    ("response_time_ms", Cell::Value),
    ("success", Cell::Value),
    ("error_message", Cell::Text),
    ("request_metadata", Cell::Text),
    ("timestamp", Cell::Value),
    ("model", Cell::Text),
    ("requested_model", Cell::Text),
    ("cache_read_tokens", Cell::Value),
    ("cache_write_tokens", Cell::Value),
    ("cache_write_1h_tokens", Cell::Value),
    ("reasoning_tokens", Cell::Value),
    ("service_tier", Cell::Text),
    ("cost_source", Cell::Text),
    ("cache_savings_usd", Cell::Value),
];

/// One RFC 4180 CSV document (header row, CRLF line ends, timestamps in ISO
/// 8601 UTC) of the rows matching `filters`, oldest first. Bounded to
/// `MAX_CSV_EXPORT_ROWS`; larger exports use COPY over `usage_export`.
#[pg_extern(stable, parallel_safe)]
fn export_usage_csv(filters: default!(Option<FiltersArg>, "'{}'")) -> String {
    let filters = filters.unwrap_or(FiltersArg(serde_json::json!({})));
    parse(Some(&filters));
    let filters = JsonB(filters.0);
    // The timestamp (formatted here) and every other column's text output
    // as one array: a row is then deconstructed once, not walked per column.
    // A 0.1.0 database (library replaced before ALTER EXTENSION … UPDATE)
    // exports the columns it has.
    let export_columns = if crate::usage::table_has_token_classes() {
        EXPORT_COLUMNS
    } else {
        &EXPORT_COLUMNS[..EXPORT_COLUMNS_0_1]
    };
    let text_columns: Vec<String> = export_columns
        .iter()
        .filter(|(name, _)| *name != "timestamp")
        .map(|(name, _)| format!("{name}::text"))
        .collect();
    let query = format!(
        "SELECT \"timestamp\", ARRAY[{}] FROM usage_analytics.usage_export($1) LIMIT {}",
        text_columns.join(", "),
        MAX_CSV_EXPORT_ROWS + 1
    );
    let timestamp_index = export_columns
        .iter()
        .position(|(name, _)| *name == "timestamp")
        .unwrap();
    let mut out = String::new();
    push_record(
        &mut out,
        export_columns.iter().map(|(name, _)| (Some(*name), Cell::Value)),
    );
    let mut rows: i64 = 0;
    let mut timestamp = String::with_capacity(32);
    Spi::connect(|client| -> Result<(), pgrx::spi::Error> {
        let mut cursor = client.try_open_cursor(query.as_str(), &[filters.into()])?;
        loop {
            let batch = cursor.fetch(EXPORT_BATCH_ROWS)?;
            if batch.is_empty() {
                return Ok(());
            }
            if out.capacity() - out.len() < batch.len() * 400 {
                out.reserve((batch.len() * 400).min(MAX_CSV_EXPORT_BYTES.saturating_sub(out.len())));
            }
            for row in batch {
                rows += 1;
                if rows > MAX_CSV_EXPORT_ROWS {
                    refuse_large_export(&format!("{MAX_CSV_EXPORT_ROWS} rows"));
                }
                timestamp.clear();
                if let Some(ts) = row.get::<TimestampWithTimeZone>(1)? {
                    push_timestamp_micros(&mut timestamp, pg_sys::TimestampTz::from(ts));
                }
                let texts = row.get::<pgrx::Array<&str>>(2)?.expect("ARRAY[] is never NULL");
                let mut texts = texts.iter();
                let mut fields: Vec<(Option<&str>, Cell)> = vec![(None, Cell::Value); export_columns.len()];
                for (i, (_, kind)) in export_columns.iter().enumerate() {
                    let value = if i == timestamp_index {
                        Some(timestamp.as_str()).filter(|t| !t.is_empty())
                    } else {
                        texts.next().flatten()
                    };
                    fields[i] = (value, *kind);
                }
                // Quoting at most doubles a field, plus separators and quotes.
                let worst_case: usize = fields.iter().map(|(v, _)| 2 * v.map_or(0, str::len) + 4).sum();
                if out.len() + worst_case > MAX_CSV_EXPORT_BYTES {
                    refuse_large_export(&format!("{} MiB", MAX_CSV_EXPORT_BYTES / (1024 * 1024)));
                }
                push_record(&mut out, fields);
            }
        }
    })
    .unwrap_or_else(|e| error!("export_usage_csv: {e}"));
    out
}

// Runs as the caller: row-level security decides which rows it sees.
extension_sql!(
    "GRANT EXECUTE ON FUNCTION usage_analytics.export_usage_csv TO PUBLIC;",
    name = "csv_export_grants",
    requires = ["roles", export_usage_csv]
);
