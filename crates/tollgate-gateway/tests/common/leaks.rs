//! Where a secret could leak, gathered and checked in one place: every
//! answer a client got (body and headers), the logs, `/metrics`,
//! `/health/*` and the ledger's file.

use super::Answer;

/// Text the gateway let out, with where it was seen.
#[derive(Default)]
pub struct Exposure {
    places: Vec<(String, String)>,
}

impl Exposure {
    /// Records `text`, seen at `place`.
    pub fn saw(&mut self, place: impl Into<String>, text: impl Into<String>) {
        self.places.push((place.into(), text.into()));
    }

    /// Records an answer's body and every header value.
    pub fn answer(&mut self, place: &str, answer: &Answer) {
        self.saw(format!("{place} (body)"), answer.text());
        for (name, value) in &answer.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            self.saw(format!("{place} (header {name})"), value);
        }
    }

    /// Records a file's bytes (the ledger), if it exists.
    pub fn file(&mut self, place: &str, path: &std::path::Path) {
        if let Ok(bytes) = std::fs::read(path) {
            self.saw(place, String::from_utf8_lossy(&bytes).into_owned());
        }
    }

    /// Panics naming the place where any of `secrets` — or its last 16
    /// characters, a key cut short — was seen. The message never quotes the
    /// text around it.
    pub fn assert_free_of(&self, secrets: &[&str]) {
        assert!(!self.places.is_empty(), "nothing was gathered");
        for secret in secrets {
            let tail = &secret[secret.len().saturating_sub(16)..];
            for (place, text) in &self.places {
                assert!(
                    !text.contains(secret) && !text.contains(tail),
                    "a secret ({} characters) leaks in {place}",
                    secret.len()
                );
            }
        }
    }
}
