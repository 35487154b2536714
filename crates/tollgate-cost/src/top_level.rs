//! One pass over the top level of a JSON answer, for
//! [`Reported::read`](crate::usage::Reported::read): every answer the layer
//! reads goes through here, and all it needs of one is its `usage` (or its
//! `response`'s), how many `choices` it has and whether its `error` is
//! non-null. Serde would build the whole envelope around those, reading
//! every key on the way; this walks the top level once, skips every other
//! value without building anything ([`Cursor::value`]), and reads `usage`
//! itself when it has the usual shape: an object of integer counts.
//!
//! Its verdicts are serde's — the oracle is `serde_json::from_slice` into
//! the envelope this replaces ([`Reported::read_with_serde`]), and the
//! tests hold the two to the same answers: values are skipped by
//! serde_json's grammar for ignored ones, top-level keys are checked for
//! UTF-8 as serde's field names are, a known key twice is an error as
//! serde's derive makes it, and anything after the object but whitespace is
//! an error. What this does not decide cheaply it leaves to serde: a
//! `usage` of another shape (serde reads that value), a top-level array
//! (serde's derive reads a struct from one), a key with escapes, values
//! (serde reads the whole body: [`Stop::Unsure`]).
//!
//! [`Reported::read_with_serde`]: crate::usage::Reported::read_with_serde

use tollgate_core::json_cursor::{Cursor, Malformed};

use crate::usage::{CompletionDetails, CostText, Count, PromptDetails, ResponseView, UsageView};

/// Why a walk stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Serde rejects the text.
    Rejected,
    /// Only serde can tell.
    Unsure,
}

impl From<Malformed> for Stop {
    fn from(Malformed: Malformed) -> Stop {
        Stop::Rejected
    }
}

pub(crate) type Step<T = ()> = Result<T, Stop>;

/// The top-level values of an object the cost layer looks at.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TopLevel<'a> {
    /// Its `usage` — or, when it has none (or `null`), its `response`'s
    /// (a Responses stream event's).
    pub(crate) usage: Option<UsageView<'a>>,
    /// How many elements its `choices` array had (`None` without the key,
    /// or when it is `null`).
    pub(crate) choices: Option<usize>,
    /// Whether it had a non-null `error`.
    pub(crate) error: bool,
}

/// Walks `json`'s top level once (see the module doc): what it holds, or
/// [`Stop::Rejected`] when serde's envelope rejects it, or [`Stop::Unsure`]
/// when only serde can tell.
pub(crate) fn skim(json: &[u8]) -> Step<TopLevel<'_>> {
    let mut cursor = Cursor::new(json);
    let walked = match cursor.peek() {
        Some(b'{') => object(&mut cursor),
        // Serde reads the envelope from an array too, by position.
        Some(b'[') => Err(Stop::Unsure),
        _ => Err(Stop::Rejected),
    };
    let top = walked?;
    // Only whitespace may follow, as `serde_json::from_slice` wants.
    match cursor.peek() {
        None => Ok(top),
        Some(_) => Err(Stop::Rejected),
    }
}

/// The top-level keys the layer looks at, each a bit of the keys seen.
const USAGE: u8 = 1;
const CHOICES: u8 = 2;
const ERROR: u8 = 4;
const RESPONSE: u8 = 8;

/// The top-level object, from its `{`.
fn object<'a>(cursor: &mut Cursor<'a>) -> Step<TopLevel<'a>> {
    let mut top = TopLevel::default();
    cursor.expect(b'{')?;
    if cursor.eat(b'}') {
        return Ok(top);
    }
    let json = cursor.json();
    let mut seen = 0u8;
    loop {
        cursor.expect(b'"')?;
        let start = cursor.position();
        if cursor.string()? {
            // Serde compares the unescaped name, and rejects a lone
            // surrogate in it: its call.
            return Err(Stop::Unsure);
        }
        let key = &json[start..cursor.position() - 1];
        if !key.is_ascii() && std::str::from_utf8(key).is_err() {
            return Err(Stop::Rejected);
        }
        cursor.expect(b':')?;
        let field = match key {
            b"usage" => USAGE,
            b"choices" => CHOICES,
            b"error" => ERROR,
            b"response" => RESPONSE,
            _ => 0,
        };
        if seen & field != 0 {
            // Serde's derive: "duplicate field".
            return Err(Stop::Rejected);
        }
        seen |= field;
        match field {
            // `usage` wins over `response`'s, in whichever order they come.
            USAGE => {
                if let Some(usage) = usage(cursor)? {
                    top.usage = Some(usage);
                }
            }
            RESPONSE => {
                // Only a Responses stream's last event has one worth
                // reading: serde reads it.
                let text = cursor.value_text()?;
                let response: Option<ResponseView<'a>> =
                    serde_json::from_slice(text).map_err(|_| Stop::Rejected)?;
                if top.usage.is_none() {
                    top.usage = response.and_then(|r| r.usage);
                }
            }
            CHOICES => top.choices = choices(cursor)?,
            ERROR => top.error = error(cursor)?,
            _ => cursor.value()?,
        }
        if !cursor.eat(b',') {
            cursor.expect(b'}')?;
            return Ok(top);
        }
    }
}

/// `choices` as serde's `Option<Vec<IgnoredAny>>` reads it: `null`, or an
/// array whose elements are counted.
fn choices(cursor: &mut Cursor<'_>) -> Step<Option<usize>> {
    match cursor.peek() {
        Some(b'n') => {
            cursor.literal(b"null")?;
            Ok(None)
        }
        Some(b'[') => Ok(Some(cursor.array_length()?)),
        _ => Err(Stop::Rejected),
    }
}

/// `error` as serde's `Option<&RawValue>` reads it: `null` is none;
/// anything else is one, whose text must be UTF-8.
fn error(cursor: &mut Cursor<'_>) -> Step<bool> {
    if cursor.peek() == Some(b'n') {
        cursor.literal(b"null")?;
        return Ok(false);
    }
    let text = cursor.value_text()?;
    if std::str::from_utf8(text).is_err() {
        return Err(Stop::Rejected);
    }
    Ok(true)
}

/// `usage` as serde's `Option<UsageView>` reads it: read here when it is
/// `null` or of the usual shape ([`usual_usage`]); serde reads any other.
fn usage<'a>(cursor: &mut Cursor<'a>) -> Step<Option<UsageView<'a>>> {
    cursor.peek();
    let start = cursor.position();
    if let Some(usage) = usual_usage(cursor) {
        return Ok(usage);
    }
    cursor.rewind(start);
    let text = cursor.value_text()?;
    serde_json::from_slice(text).map_err(|_| Stop::Rejected)
}

/// The fields of [`UsageView`], each under its names (an alias is its
/// field: given under both names, a field is the duplicate it is to serde).
#[derive(Clone, Copy)]
enum UsageField {
    Prompt,
    Completion,
    PromptDetails,
    CompletionDetails,
    CacheRead,
    CacheCreation,
    Cost,
}

impl UsageField {
    fn of(key: &[u8]) -> Option<UsageField> {
        Some(match key {
            b"prompt_tokens" | b"input_tokens" => UsageField::Prompt,
            b"completion_tokens" | b"output_tokens" => UsageField::Completion,
            b"prompt_tokens_details" | b"input_tokens_details" => UsageField::PromptDetails,
            b"completion_tokens_details" | b"output_tokens_details" => {
                UsageField::CompletionDetails
            }
            b"cache_read_input_tokens" => UsageField::CacheRead,
            b"cache_creation_input_tokens" => UsageField::CacheCreation,
            b"cost" => UsageField::Cost,
            _ => return None,
        })
    }
}

/// A usage of `null` (no usage), or an object whose keys are plain ASCII,
/// each known one once, whose counts are `null` or integers below 10^19
/// and whose details are `null` or objects of such counts. `None` for
/// anything else: serde reads it (and may reject it).
fn usual_usage<'a>(cursor: &mut Cursor<'a>) -> Option<Option<UsageView<'a>>> {
    if cursor.peek() == Some(b'n') {
        cursor.literal(b"null").ok()?;
        return Some(None);
    }
    let mut view = UsageView::default();
    let mut seen = 0u8;
    members(cursor, |cursor, key| {
        let Some(field) = UsageField::of(key) else {
            return cursor.value().ok();
        };
        let bit = 1 << field as u8;
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        match field {
            UsageField::Prompt => view.prompt_tokens = count(cursor)?,
            UsageField::Completion => view.completion_tokens = count(cursor)?,
            UsageField::CacheRead => view.cache_read_input_tokens = count(cursor)?,
            UsageField::CacheCreation => view.cache_creation_input_tokens = count(cursor)?,
            UsageField::PromptDetails => {
                let names = [
                    "cached_tokens",
                    "cache_write_tokens",
                    "cache_creation_tokens",
                ];
                view.prompt_tokens_details =
                    counts(cursor, names)?.map(|[cached, write, creation]| PromptDetails {
                        cached_tokens: cached,
                        cache_write_tokens: write,
                        cache_creation_tokens: creation,
                    });
            }
            UsageField::CompletionDetails => {
                view.completion_tokens_details = counts(cursor, ["reasoning_tokens"])?
                    .map(|[reasoning_tokens]| CompletionDetails { reasoning_tokens });
            }
            UsageField::Cost => {
                view.cost = if cursor.peek() == Some(b'n') {
                    cursor.literal(b"null").ok()?;
                    None
                } else {
                    // Serde's raw value: its text, which must be UTF-8.
                    let text = cursor.value_text().ok()?;
                    Some(CostText(std::str::from_utf8(text).ok()?))
                };
            }
        }
        Some(())
    })?;
    Some(Some(view))
}

/// A details object (`null` is none) whose counts are `names`, each at
/// most once, read as [`count`] reads them; `None` when it is not one.
fn counts<const N: usize>(cursor: &mut Cursor<'_>, names: [&str; N]) -> Option<Option<[Count; N]>> {
    if cursor.peek() == Some(b'n') {
        cursor.literal(b"null").ok()?;
        return Some(None);
    }
    let mut counts = [Count(None); N];
    let mut seen = [false; N];
    members(cursor, |cursor, key| {
        let Some(index) = names.iter().position(|name| name.as_bytes() == key) else {
            return cursor.value().ok();
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
        counts[index] = count(cursor)?;
        Some(())
    })?;
    Some(Some(counts))
}

/// An object's members: `member` reads each value, after its key (plain
/// ASCII: a key with escapes or other bytes is `None`, serde's to read).
fn members<'a>(
    cursor: &mut Cursor<'a>,
    mut member: impl FnMut(&mut Cursor<'a>, &'a [u8]) -> Option<()>,
) -> Option<()> {
    cursor.expect(b'{').ok()?;
    if cursor.eat(b'}') {
        return Some(());
    }
    let json = cursor.json();
    loop {
        cursor.expect(b'"').ok()?;
        let start = cursor.position();
        if cursor.string().ok()? {
            return None;
        }
        let key = &json[start..cursor.position() - 1];
        if !key.is_ascii() {
            return None;
        }
        cursor.expect(b':').ok()?;
        member(cursor, key)?;
        if !cursor.eat(b',') {
            cursor.expect(b'}').ok()?;
            return Some(());
        }
    }
}

/// A token count that is `null` or an integer below 10^19 (no sign,
/// fraction, exponent or leading zero); `None` for any other value.
#[inline]
fn count(cursor: &mut Cursor<'_>) -> Option<Count> {
    match cursor.peek()? {
        b'n' => {
            cursor.literal(b"null").ok()?;
            Some(Count(None))
        }
        first @ b'0'..=b'9' => {
            let start = cursor.position();
            let digits = cursor.digits();
            let plain = digits <= 19
                && (first != b'0' || digits == 1)
                && !matches!(cursor.rest().first(), Some(b'.' | b'e' | b'E'));
            if !plain {
                return None;
            }
            let text = &cursor.json()[start..cursor.position()];
            let value = text
                .iter()
                .fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
            Some(Count(Some(value)))
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "top_level/tests.rs"]
mod tests;
