//! Reading "when may I try again" out of response headers.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// The wait an upstream asked for: `retry-after-ms` (OpenAI's, fractional
/// milliseconds) first, then `Retry-After` as seconds or as an HTTP date
/// relative to `now`. A date in the past means "now" (zero); garbage is
/// ignored.
pub fn retry_after_from_headers(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        // `try_`: a wait past `Duration`'s range is garbage too (the plain
        // conversion panics on it).
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs >= 0.0)
            .then(|| Duration::try_from_secs_f64(secs).ok())
            .flatten();
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses an HTTP date: the IMF-fixdate senders generate (`Sun, 06 Nov
/// 1994 08:49:37 GMT`) and the two obsolete forms recipients must still
/// accept (RFC 9110, 5.6.7), with the `httpdate` crate.
pub fn parse_http_date(value: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::UNIX_EPOCH;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn parses_the_rfc_example_date() {
        let at = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            at.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            784_111_777
        );
        // The obsolete forms, which recipients must accept.
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(at));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(at));
        assert!(parse_http_date("garbage").is_none());
        assert!(parse_http_date("Sun, 31 Nov 1994 08:49:37 GMT").is_none());
    }

    #[test]
    fn retry_after_ms_wins_then_seconds_then_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_700);
        let h = headers(&[("retry-after-ms", "120"), ("retry-after", "5")]);
        assert_eq!(
            retry_after_from_headers(&h, now),
            Some(Duration::from_millis(120))
        );
        let h = headers(&[("retry-after", "35")]);
        assert_eq!(
            retry_after_from_headers(&h, now),
            Some(Duration::from_secs(35))
        );
        let h = headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(
            retry_after_from_headers(&h, now),
            Some(Duration::from_secs(77))
        );
        let past = UNIX_EPOCH + Duration::from_secs(900_000_000);
        assert_eq!(retry_after_from_headers(&h, past), Some(Duration::ZERO));
        assert_eq!(
            retry_after_from_headers(&headers(&[("retry-after", "soon")]), now),
            None
        );
        assert_eq!(retry_after_from_headers(&HeaderMap::new(), now), None);
    }

    /// Found by the `openrouter_response` fuzz target: a wait past
    /// `Duration`'s range panicked in the conversion.
    #[test]
    fn a_wait_past_durations_range_is_garbage_not_a_panic() {
        let now = UNIX_EPOCH;
        for (name, value) in [
            ("retry-after", "1e300"),
            ("retry-after", "inf"),
            ("retry-after-ms", "1e300"),
        ] {
            assert_eq!(
                retry_after_from_headers(&headers(&[(name, value)]), now),
                None
            );
        }
    }
}
