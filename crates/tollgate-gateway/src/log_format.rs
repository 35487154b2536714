//! [`JsonLines`]: the `--log-format json` line, written straight into the
//! line buffer.
//!
//! `tracing-subscriber`'s JSON formatter serialises every field through
//! `serde_json` into an `io::Write` adaptor over the line's `fmt::Write`
//! buffer: about 130 small writes per access-log line, each checking its
//! bytes are UTF-8 again — measured with callgrind at 18% of all the
//! instructions the gateway runs per request, more than the whole upstream
//! round trip through hyper. This formatter writes the same line — one flat
//! JSON object: `timestamp`, `level`, the event's fields (`message` among
//! them), `target`, and `spans` when the event is inside any — with one
//! `write_str` per piece, strings escaped in runs.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use tollgate_core::time::civil_from_days;

/// What the gateway writes its access-log lines as when it writes them
/// itself (`Gateway::write_access_log_to`): the line the subscriber's
/// formatter would make of the access-log event, without formatting the
/// event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// [`JsonLines`]' line.
    Json,
    /// `tracing-subscriber`'s default text line (`fmt::format::Full`) with
    /// ANSI colours off.
    Text,
}

/// One JSON object per event, on one line (see the module's documentation).
///
/// ```
/// use tollgate_gateway::log_format::JsonLines;
///
/// let subscriber = tracing_subscriber::fmt()
///     .event_format(JsonLines)
///     .with_writer(std::io::stderr)
///     .finish();
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info!(request_id = "tg-1", status = 200u16, "request");
/// });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(metadata.level().as_str())?;
        writer.write_char('"')?;
        let mut fields = Fields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, metadata.target())?;
        if let Some(scope) = ctx.event_scope() {
            let mut first = true;
            for span in scope.from_root() {
                writer.write_str(if first { ",\"spans\":[" } else { "," })?;
                first = false;
                write_string(&mut writer, span.name())?;
            }
            if !first {
                writer.write_char(']')?;
            }
        }
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            self.out.write_char(',')?;
            write_string(self.out, field.name())?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| write_string(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN nor infinities.
        self.field(field, |out| {
            if value.is_finite() {
                write!(out, "{value}")
            } else {
                out.write_str("null")
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// `value` as a JSON string, quotes included.
pub(crate) fn write_string(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    if value.bytes().any(needs_escape) {
        Escaped(out).write_str(value)?;
    } else {
        // Ids, names and labels: nearly every string logged.
        out.write_str(value)?;
    }
    out.write_char('"')
}

/// Whether `byte` cannot stand for itself inside a JSON string.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\' || byte == 0x7f
}

/// A `fmt::Write` that escapes what goes through it for the inside of a
/// JSON string, passing runs of plain characters on in one piece.
struct Escaped<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let bytes = text.as_bytes();
        let mut plain = 0;
        for (at, &byte) in bytes.iter().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f | 0x7f => "",
                _ => continue,
            };
            // Every byte escaped is ASCII, so these are char boundaries.
            self.0.write_str(&text[plain..at])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = at + 1;
        }
        self.0.write_str(&text[plain..])
    }
}

/// `at` as RFC 3339 in UTC with microseconds: `2026-11-27T10:58:00.123456Z`
/// (digits placed by hand: `core::fmt` with its padding is a few thousand
/// instructions a line).
pub(crate) fn write_timestamp(out: &mut impl fmt::Write, at: SystemTime) -> fmt::Result {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let (year, month, day) = civil_from_days(days);
    let of_day = secs % 86_400;
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut text[0..4], year.unsigned_abs());
    put_digits(&mut text[5..7], u64::from(month));
    put_digits(&mut text[8..10], u64::from(day));
    put_digits(&mut text[11..13], of_day / 3600);
    put_digits(&mut text[14..16], of_day / 60 % 60);
    put_digits(&mut text[17..19], of_day % 60);
    put_digits(&mut text[20..26], u64::from(since_epoch.subsec_micros()));
    // Only ASCII digits were placed.
    out.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

/// `value`'s last `slot.len()` decimal digits, zero-padded, into `slot`.
fn put_digits(slot: &mut [u8], mut value: u64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// A writer that keeps what a test's subscriber writes.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Lines(pub(crate) std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl std::io::Write for Lines {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What [`JsonLines`] writes of the events `log` makes, at any level.
#[cfg(test)]
pub(crate) fn captured(log: impl FnOnce()) -> String {
    let lines = Lines::default();
    let sink = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .event_format(JsonLines)
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::with_default(subscriber, log);
    let text = lines.0.lock().unwrap().clone();
    String::from_utf8(text).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn logged(log: impl FnOnce()) -> Vec<serde_json::Value> {
        captured(log)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    #[test]
    fn every_kind_of_field_is_valid_json_with_its_type() {
        struct Shown;
        impl fmt::Display for Shown {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a \"shown\" value")
            }
        }
        let lines = logged(|| {
            tracing::info!(
                target: "tollgate::access",
                request_id = "tg-1",
                status = 200u16,
                delta = -3i64,
                stream = true,
                latency_ms = 1.25f64,
                nan = f64::NAN,
                cost = %Shown,
                class = ?Some("x"),
                "request {}", 7
            );
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "tollgate::access");
        assert_eq!(line["message"], "request 7");
        assert_eq!(line["request_id"], "tg-1");
        assert_eq!(line["status"], 200);
        assert_eq!(line["delta"], -3);
        assert_eq!(line["stream"], true);
        assert_eq!(line["latency_ms"], 1.25);
        assert!(line["nan"].is_null());
        assert_eq!(line["cost"], "a \"shown\" value");
        assert_eq!(line["class"], "Some(\"x\")");
        assert!(line.get("spans").is_none());
        let timestamp = line["timestamp"].as_str().unwrap();
        assert_eq!(
            timestamp.len(),
            "2026-11-27T10:58:00.123456Z".len(),
            "{timestamp}"
        );
    }

    #[test]
    fn strings_are_escaped_whatever_they_hold() {
        let nasty = "quote \" backslash \\ newline \n cr \r tab \t bell \u{7} del \u{7f} é 😀 end";
        let lines = logged(|| tracing::warn!(value = nasty, "{nasty}"));
        assert_eq!(lines[0]["value"], nasty);
        assert_eq!(lines[0]["message"], nasty);
        assert_eq!(lines[0]["level"], "WARN");
    }

    #[test]
    fn the_spans_an_event_is_in_are_named_outermost_first() {
        let lines = logged(|| {
            let outer = tracing::info_span!("outer");
            let _outer = outer.enter();
            let inner = tracing::info_span!("inner");
            let _inner = inner.enter();
            tracing::info!("inside");
        });
        assert_eq!(lines[0]["spans"], serde_json::json!(["outer", "inner"]));
    }

    #[test]
    fn timestamps_are_rfc_3339_utc_with_microseconds() {
        let mut text = String::new();
        write_timestamp(&mut text, UNIX_EPOCH).unwrap();
        assert_eq!(text, "1970-01-01T00:00:00.000000Z");
        // 2024-02-29T23:59:59.000123Z: a leap day, at the end of it.
        let at = UNIX_EPOCH + Duration::new(1_709_251_199, 123_000);
        text.clear();
        write_timestamp(&mut text, at).unwrap();
        assert_eq!(text, "2024-02-29T23:59:59.000123Z");
        // 2026-12-31T12:00:00Z and 2027-01-01T00:00:00Z.
        text.clear();
        write_timestamp(&mut text, UNIX_EPOCH + Duration::from_secs(1_798_718_400)).unwrap();
        assert_eq!(text, "2026-12-31T12:00:00.000000Z");
        text.clear();
        write_timestamp(&mut text, UNIX_EPOCH + Duration::from_secs(1_798_761_600)).unwrap();
        assert_eq!(text, "2027-01-01T00:00:00.000000Z");
    }
}
