//! One structured log line per request.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tollgate_core::ErrorClass;

use tollgate_cost::{RequestTally, TallySnapshot};

use crate::grace::GracePeriod;
use crate::log_format::{AccessLogFormat, write_string, write_timestamp};
use crate::log_writer::LogWriter;
use crate::metrics::{Metrics, RequestMetrics};

/// The `target` of access-log lines.
const TARGET: &str = "tollgate::access";

/// What the access log line says about a request; written once, when the
/// response body ends or is dropped (so a stream is logged when it finishes,
/// a client that hangs up is logged as such, and so is a request the
/// shutdown's grace period cut).
///
/// It never holds prompt or completion text, nor any key.
#[derive(Debug)]
pub(crate) struct AccessLog {
    pub(crate) request_id: Arc<str>,
    pub(crate) route: &'static str,
    pub(crate) model_group: Option<Arc<str>>,
    pub(crate) deployment: Option<Arc<str>>,
    /// The virtual key's name (its alias or a hash prefix), never the key.
    pub(crate) key: Option<Arc<str>>,
    pub(crate) status: u16,
    pub(crate) class: Option<ErrorClass>,
    pub(crate) stream: bool,
    pub(crate) start: Instant,
    pub(crate) finished: bool,
    /// The server cut the response: its client had not taken it by the
    /// request's deadline.
    pub(crate) write_timeout: bool,
    /// When the first byte of the body went to the client (streams: the
    /// first token, as the cascade holds a stream back until its first
    /// content).
    pub(crate) first_data: Option<Instant>,
    pub(crate) retries: u32,
    pub(crate) fallbacks: u32,
    /// The metrics to count the request in, with its `route` label.
    pub(crate) metrics: Option<(Metrics, &'static str)>,
    /// The tokens and cost of the request's upstream attempts.
    pub(crate) tally: Option<Arc<RequestTally>>,
    /// Where the line goes without `tracing`'s formatter, and as what, if
    /// set (see `Gateway::write_access_log_to`).
    pub(crate) direct: Option<(LogWriter, AccessLogFormat)>,
    /// The server's grace period: a request unfinished once it is over was
    /// cut by the shutdown, not left by its client.
    pub(crate) grace: Option<GracePeriod>,
    /// The gateway cut the request at the grace period's end (a 503 or a
    /// stream's error event).
    pub(crate) shutdown: bool,
}

impl AccessLog {
    pub(crate) fn new(request_id: Arc<str>, route: &'static str, start: Instant) -> Self {
        AccessLog {
            request_id,
            route,
            model_group: None,
            deployment: None,
            key: None,
            status: 0,
            class: None,
            stream: false,
            start,
            finished: false,
            write_timeout: false,
            first_data: None,
            retries: 0,
            fallbacks: 0,
            metrics: None,
            tally: None,
            direct: None,
            grace: None,
            shutdown: false,
        }
    }

    /// `write_timeout`, `shutdown`, `client_gone`, `error` or `ok`.
    fn outcome(&self) -> &'static str {
        if self.write_timeout {
            "write_timeout"
        } else if self.shutdown
            || (!self.finished && self.grace.as_ref().is_some_and(GracePeriod::is_over))
        {
            "shutdown"
        } else if !self.finished {
            "client_gone"
        } else if self.class.is_some() {
            "error"
        } else {
            "ok"
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let total = self.start.elapsed();
        let tally = self.tally.as_ref().map(|t| t.snapshot());
        let outcome = self.outcome();
        if let Some((metrics, route)) = &self.metrics {
            metrics.request(&RequestMetrics {
                route,
                model_group: self.model_group.as_deref(),
                status: self.status,
                class: self.class.map(ErrorClass::as_str),
                stream: self.stream,
                total,
                upstream: tally.filter(|t| t.attempts > 0).map(|t| t.upstream_time),
                time_to_first_token: self
                    .stream
                    .then(|| self.first_data.map(|at| at - self.start))
                    .flatten(),
                retries: self.retries,
                fallbacks: self.fallbacks,
                client_gone: outcome == "client_gone",
            });
        }
        let direct = self.direct.take();
        let line = Line {
            log: self,
            latency: total,
            outcome,
            tally,
        };
        match direct {
            Some((mut writer, format)) if tracing::enabled!(target: TARGET, tracing::Level::INFO) =>
            {
                line.write(&mut writer, format);
            }
            _ => line.emit(),
        }
    }
}

/// The access-log line of a request, as a `tracing` event or written as
/// JSON by hand (the same fields, the same values).
struct Line<'a> {
    log: &'a AccessLog,
    latency: Duration,
    outcome: &'static str,
    tally: Option<TallySnapshot>,
}

impl Line<'_> {
    fn emit(&self) {
        let (log, tally) = (self.log, self.tally);
        tracing::info!(
            target: TARGET,
            request_id = %log.request_id,
            route = log.route,
            model = log.model_group.as_deref().unwrap_or(""),
            deployment = log.deployment.as_deref().unwrap_or(""),
            key = log.key.as_deref().unwrap_or(""),
            status = log.status,
            class = log.class.map_or("", ErrorClass::as_str),
            stream = log.stream,
            latency_ms = micros(self.latency) as f64 / 1000.0,
            outcome = self.outcome,
            prompt_tokens = tally.map_or(0, |t| t.usage.prompt_tokens),
            completion_tokens = tally.map_or(0, |t| t.usage.completion_tokens),
            tokens_estimated = tally.is_some_and(|t| t.usage.estimated),
            cost = %CostField(tally),
            "request"
        );
    }

    /// The line the subscriber's formatter makes of [`emit`](Self::emit)'s
    /// event (`JsonLines`, or `tracing-subscriber`'s default text format
    /// without colours), written into a reused per-thread buffer and handed
    /// to `writer` whole.
    fn write(&self, writer: &mut LogWriter, format: AccessLogFormat) {
        thread_local! {
            static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            // Writing to a `String` cannot fail.
            let _ = match format {
                AccessLogFormat::Json => self.format_json(line),
                AccessLogFormat::Text => self.format_text(line),
            };
            let _ = writer.write_all(line.as_bytes());
        });
    }

    fn format_json(&self, out: &mut String) -> std::fmt::Result {
        let (log, tally) = (self.log, self.tally);
        out.push_str("{\"timestamp\":\"");
        write_timestamp(out, SystemTime::now())?;
        out.push_str("\",\"level\":\"INFO\",\"message\":\"request\",\"request_id\":");
        write_string(out, &log.request_id)?;
        out.push_str(",\"route\":");
        write_string(out, log.route)?;
        out.push_str(",\"model\":");
        write_string(out, log.model_group.as_deref().unwrap_or(""))?;
        out.push_str(",\"deployment\":");
        write_string(out, log.deployment.as_deref().unwrap_or(""))?;
        out.push_str(",\"key\":");
        write_string(out, log.key.as_deref().unwrap_or(""))?;
        out.push_str(",\"status\":");
        out.push_str(itoa::Buffer::new().format(log.status));
        out.push_str(",\"class\":");
        write_string(out, log.class.map_or("", ErrorClass::as_str))?;
        out.push_str(if log.stream {
            ",\"stream\":true,\"latency_ms\":"
        } else {
            ",\"stream\":false,\"latency_ms\":"
        });
        write_millis(out, self.latency);
        out.push_str(",\"outcome\":");
        write_string(out, self.outcome)?;
        out.push_str(",\"prompt_tokens\":");
        out.push_str(itoa::Buffer::new().format(tally.map_or(0, |t| t.usage.prompt_tokens)));
        out.push_str(",\"completion_tokens\":");
        out.push_str(itoa::Buffer::new().format(tally.map_or(0, |t| t.usage.completion_tokens)));
        out.push_str(if tally.is_some_and(|t| t.usage.estimated) {
            ",\"tokens_estimated\":true,\"cost\":\""
        } else {
            ",\"tokens_estimated\":false,\"cost\":\""
        });
        // Digits, a point or `unknown`: nothing to escape.
        write!(out, "{}", CostField(tally))?;
        out.push_str("\",\"target\":\"tollgate::access\"}\n");
        Ok(())
    }

    /// `tracing-subscriber`'s default (`Full`) text line of the event, ANSI
    /// colours off: the timestamp, the padded level, the target, the
    /// message, then `name=value` with strings in their `Debug` form and
    /// `%` fields as they display.
    fn format_text(&self, out: &mut String) -> std::fmt::Result {
        let (log, tally) = (self.log, self.tally);
        write_timestamp(out, SystemTime::now())?;
        out.push_str("  INFO tollgate::access: request request_id=");
        out.push_str(&log.request_id);
        out.push_str(" route=");
        write_debug_str(out, log.route)?;
        out.push_str(" model=");
        write_debug_str(out, log.model_group.as_deref().unwrap_or(""))?;
        out.push_str(" deployment=");
        write_debug_str(out, log.deployment.as_deref().unwrap_or(""))?;
        out.push_str(" key=");
        write_debug_str(out, log.key.as_deref().unwrap_or(""))?;
        out.push_str(" status=");
        out.push_str(itoa::Buffer::new().format(log.status));
        out.push_str(" class=");
        write_debug_str(out, log.class.map_or("", ErrorClass::as_str))?;
        out.push_str(if log.stream {
            " stream=true latency_ms="
        } else {
            " stream=false latency_ms="
        });
        // `f64`'s `Debug`: `Display`'s digits, and `.0` when whole.
        if write_millis(out, self.latency) {
            out.push_str(".0");
        }
        out.push_str(" outcome=");
        write_debug_str(out, self.outcome)?;
        out.push_str(" prompt_tokens=");
        out.push_str(itoa::Buffer::new().format(tally.map_or(0, |t| t.usage.prompt_tokens)));
        out.push_str(" completion_tokens=");
        out.push_str(itoa::Buffer::new().format(tally.map_or(0, |t| t.usage.completion_tokens)));
        out.push_str(if tally.is_some_and(|t| t.usage.estimated) {
            " tokens_estimated=true cost="
        } else {
            " tokens_estimated=false cost="
        });
        write!(out, "{}", CostField(tally))?;
        out.push('\n');
        Ok(())
    }
}

/// `latency` in whole microseconds, half a microsecond rounded up: the
/// line's `latency_ms` is this over 1000, both ways it is written.
fn micros(latency: Duration) -> u64 {
    u64::try_from((latency.as_nanos() + 500) / 1000).unwrap_or(u64::MAX)
}

/// `value` as `str`'s `Debug` writes it: quoted, escaped. Names, labels
/// and classes are printable ASCII without quotes or backslashes, which
/// stand for themselves.
fn write_debug_str(out: &mut String, value: &str) -> std::fmt::Result {
    if value
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(value);
        out.push('"');
        Ok(())
    } else {
        write!(out, "{value:?}")
    }
}

/// `latency` in milliseconds to the microsecond, as the `f64` the event
/// records prints: `0.049`, `12.5`, `3`. Returns whether it was whole.
fn write_millis(out: &mut String, latency: Duration) -> bool {
    let micros = micros(latency);
    let (whole, frac) = (micros / 1000, micros % 1000);
    out.push_str(itoa::Buffer::new().format(whole));
    if frac != 0 {
        let digits = [
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        let len = 4 - digits.iter().rev().take_while(|&&d| d == b'0').count();
        out.push_str(std::str::from_utf8(&digits[..len]).unwrap_or(""));
    }
    frac == 0
}

/// The `cost` field of the line: exact decimal dollars, `unknown` when an
/// attempt's price is not known, empty when nothing was attempted.
struct CostField(Option<TallySnapshot>);

impl std::fmt::Display for CostField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(tally) if tally.cost_unknown => f.write_str("unknown"),
            Some(tally) if tally.attempts > 0 => write!(f, "{}", tally.billed),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_cost::Usd;

    /// The line as `tracing` and `JsonLines` write the event, and as
    /// written by hand, byte for byte but for their timestamps (checked to
    /// be well formed), each parsed as JSON.
    fn both_ways(line: &Line<'_>) -> (String, String) {
        let traced = crate::log_format::captured(|| line.emit());
        let mut direct = String::new();
        line.format_json(&mut direct).unwrap();
        let without_timestamp = |text: &str| {
            let value: serde_json::Value =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
            let timestamp = value["timestamp"].as_str().unwrap();
            assert_eq!(timestamp.len(), 27, "{text}");
            assert_eq!(text.matches('\n').count(), 1, "{text}");
            text.replacen(timestamp, "", 1)
        };
        (without_timestamp(&traced), without_timestamp(&direct))
    }

    fn log() -> AccessLog {
        AccessLog::new(Arc::from("tg-0123"), "chat_completions", Instant::now())
    }

    /// The line as `tracing-subscriber`'s default text format writes the
    /// event (colours off, as when stderr is not a terminal) and as written
    /// by hand, byte for byte but for their timestamps (checked to be well
    /// formed).
    fn both_ways_text(line: &Line<'_>) -> (String, String) {
        let lines = crate::log_format::Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || line.emit());
        let traced = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let mut direct = String::new();
        line.format_text(&mut direct).unwrap();
        let without_timestamp = |text: &str| {
            let (timestamp, rest) = text.split_at(27);
            let shape: String = timestamp
                .chars()
                .map(|c| if c.is_ascii_digit() { '0' } else { c })
                .collect();
            assert_eq!(shape, "0000-00-00T00:00:00.000000Z", "{text}");
            assert_eq!(text.matches('\n').count(), 1, "{text}");
            assert!(text.ends_with('\n'), "{text}");
            rest.to_owned()
        };
        (without_timestamp(&traced), without_timestamp(&direct))
    }

    #[test]
    fn the_hand_written_lines_are_the_events_lines() {
        let mut ok = log();
        ok.model_group = Some(Arc::from("gpt-4o-mini"));
        ok.deployment = Some(Arc::from("gpt-fast-1"));
        ok.key = Some(Arc::from("team-a"));
        ok.status = 200;
        ok.stream = true;
        ok.finished = true;
        let mut odd = log();
        odd.model_group = Some(Arc::from("gpt \"fast\"\n\\ é\u{1b}[31m"));
        odd.key = Some(Arc::from("it's"));
        odd.status = 200;
        odd.finished = true;
        let mut tally = TallySnapshot::default();
        tally.usage.prompt_tokens = 12;
        tally.usage.completion_tokens = 345;
        tally.usage.estimated = true;
        tally.billed = Usd::from_picos(296_660_000);
        tally.attempts = 2;
        let mut failed = log();
        failed.status = 503;
        failed.class = Some(ErrorClass::UpstreamUnavailable);
        failed.finished = true;
        let mut unknown_cost = tally;
        unknown_cost.cost_unknown = true;
        let cases = [
            (&ok, Duration::from_micros(12_500), "ok", Some(tally)),
            (&ok, Duration::from_nanos(49_499), "ok", Some(unknown_cost)),
            (&odd, Duration::from_micros(1_001), "ok", Some(tally)),
            (&failed, Duration::from_secs(3), "error", None),
            (
                &log(),
                Duration::ZERO,
                "client_gone",
                Some(TallySnapshot::default()),
            ),
        ];
        for (log, latency, outcome, tally) in cases {
            let line = Line {
                log,
                latency,
                outcome,
                tally,
            };
            let (traced, direct) = both_ways(&line);
            assert_eq!(traced, direct);
            let (traced, direct) = both_ways_text(&line);
            assert_eq!(traced, direct);
        }
    }

    #[test]
    fn a_request_unfinished_at_the_grace_periods_end_was_cut_by_the_shutdown() {
        let grace = GracePeriod::default();
        let mut gone = log();
        gone.grace = Some(grace.clone());
        assert_eq!(gone.outcome(), "client_gone");
        let mut done = log();
        done.finished = true;
        done.grace = Some(grace.clone());
        grace.end();
        assert_eq!(gone.outcome(), "shutdown");
        assert_eq!(done.outcome(), "ok", "what had finished stays as it was");
        // Cut by the gateway itself: a 503 or a stream's last event.
        let mut cut = log();
        cut.finished = true;
        cut.shutdown = true;
        assert_eq!(cut.outcome(), "shutdown");
    }

    #[test]
    fn milliseconds_are_printed_as_the_event_prints_them() {
        for (latency, expected) in [
            (Duration::from_micros(49), "0.049"),
            (Duration::from_micros(12_500), "12.5"),
            (Duration::from_millis(3), "3"),
            (Duration::from_nanos(1_499), "0.001"),
            (Duration::from_nanos(1_500), "0.002"),
            // A tie at half a microsecond, where `f64` rounding would go down.
            (Duration::from_nanos(124_500), "0.125"),
            (Duration::ZERO, "0"),
        ] {
            let mut out = String::new();
            write_millis(&mut out, latency);
            assert_eq!(out, expected, "{latency:?}");
            let event = micros(latency) as f64 / 1000.0;
            assert_eq!(event.to_string(), expected);
        }
    }
}
