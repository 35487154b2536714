//! [`ChunkView`]: what one chat-completions (or legacy completions) stream
//! chunk holds, as far as the layers care, read without building a JSON
//! tree.
//!
//! Every event of every stream is read here (the fallback layer reads each
//! one before it forwards it), so the reading is a walk over the bytes
//! ([`Cursor`]) that builds nothing but the chunk's view and borrows its
//! text. Its verdicts are those of the serde visitor it replaced, which the
//! tests keep as its oracle: the same leniency for the fields it reads, the
//! same rejections (serde_json's grammar, UTF-8 in the strings serde reads
//! as text, duplicate fields of a choice or a delta, a choice read from an
//! array field by field as serde's derive reads a struct from one).

use std::borrow::Cow;

use crate::json_cursor::{Cursor, Malformed, Step};

/// What a stream chunk's `choices` hold: where it commits a stream (its
/// first content), where it finishes, the text it adds. Every field is
/// read leniently — content as a list of parts, reasoning as an object — so
/// that a provider's variation is never mistaken for a malformed chunk.
///
/// ```
/// use tollgate_core::ChunkView;
///
/// let chunk = ChunkView::read(br#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#).unwrap();
/// assert!(chunk.content && !chunk.finish);
/// assert_eq!(chunk.text.as_deref(), Some("Hi"));
/// assert!(ChunkView::read(b"[DONE]").is_err());
/// ```
#[derive(Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChunkView<'a> {
    /// `choices[0].delta.content`, borrowed unless it had escapes.
    pub text: Option<Cow<'a, str>>,
    /// Content, reasoning, a refusal, a tool call or a `finish_reason`.
    pub content: bool,
    /// A `finish_reason` other than `"error"`.
    pub finish: bool,
    /// `finish_reason: "error"` (OpenRouter's way of failing mid-stream).
    pub finish_error: bool,
    /// Tool calls, refusals, non-text content, several choices or a legacy
    /// completion's text: a prefill of messages cannot continue those.
    pub not_continuable: bool,
    /// The last event of a stream of OpenAI's Responses API
    /// (`response.completed`, `response.incomplete`): its clean end, which
    /// no `[DONE]` follows.
    pub end: bool,
}

impl<'a> ChunkView<'a> {
    /// Reads the data of one stream event.
    ///
    /// # Errors
    ///
    /// When the data is not one JSON object, or its `choices` are not
    /// what serde would read as choices.
    pub fn read(data: &'a [u8]) -> Result<ChunkView<'a>, Malformed> {
        Self::walk(data, 0).0
    }

    /// Reads `data` from `resume`: 0 for the start, or the length of a
    /// quiet prefix it is known to start with (see [`ChunkReader`]). Also
    /// returns the length of its own quiet prefix: the members, each with
    /// the comma after it, before its first `choices` or `type` (0 when
    /// that is its first member).
    fn walk(data: &'a [u8], resume: usize) -> (Result<ChunkView<'a>, Malformed>, usize) {
        let mut chunk = ChunkView::default();
        let mut quiet = resume;
        let mut cursor = Cursor::starting_at(data, resume);
        let walked = chunk.members(&mut cursor, resume == 0, &mut quiet);
        match walked {
            Ok(()) if cursor.at_end() => (Ok(chunk), quiet),
            _ => (Err(Malformed), 0),
        }
    }

    /// The top-level members, from the `{` when `from_start`, else from
    /// after a comma between two of them; `quiet` moves past each comma
    /// until a member that matters was read.
    fn members(&mut self, cursor: &mut Cursor<'a>, from_start: bool, quiet: &mut usize) -> Step {
        if from_start {
            cursor.expect(b'{')?;
            if cursor.eat(b'}') {
                return Ok(());
            }
        }
        let mut heard = false;
        loop {
            cursor.expect(b'"')?;
            let key = cursor.key_text()?;
            cursor.expect(b':')?;
            match &*key {
                b"choices" => {
                    heard = true;
                    self.read_choices(cursor)?;
                }
                b"type" => {
                    heard = true;
                    let kind = loose(cursor)?;
                    self.typed_event(kind);
                }
                _ => cursor.value()?,
            }
            if !cursor.eat(b',') {
                return cursor.expect(b'}');
            }
            if !heard {
                *quiet = cursor.position();
            }
        }
    }

    /// `choices`: a list of choices; `null` or an object is none.
    fn read_choices(&mut self, cursor: &mut Cursor<'a>) -> Step {
        match cursor.peek() {
            Some(b'[') => {
                cursor.expect(b'[')?;
                cursor.elements(|cursor| {
                    let choice = ChoiceFacts::read(cursor)?;
                    self.add_choice(choice);
                    Ok(())
                })
            }
            Some(b'n') => cursor.literal(b"null"),
            Some(b'{') => {
                cursor.expect(b'{')?;
                cursor.members(|cursor, _| cursor.value())
            }
            _ => Err(Malformed),
        }
    }

    /// An event of OpenAI's Responses API, by its `type` (API reference,
    /// "Responses" → "Streaming events"): the events before the first output
    /// are no content, its last one finishes it, and no such stream can be
    /// continued from a prefill of chat messages. A chat chunk has no `type`.
    fn typed_event(&mut self, kind: Loose<'_>) {
        let Loose::Text(kind) = kind else { return };
        let Some(event) = kind.strip_prefix("response.") else {
            return;
        };
        self.not_continuable = true;
        match event {
            "created" | "in_progress" | "queued" => {}
            "completed" | "incomplete" => {
                self.content = true;
                self.finish = true;
                self.end = true;
            }
            _ => self.content = true,
        }
    }

    /// What one choice adds to the chunk.
    fn add_choice(&mut self, choice: ChoiceFacts<'a>) {
        if choice.index != 0 {
            self.not_continuable = true;
        }
        match choice.finish {
            Finish::None => {}
            Finish::Error => self.finish_error = true,
            Finish::Other => {
                self.finish = true;
                self.content = true;
            }
        }
        // A legacy completion's chunk carries its text here, not in a
        // delta; a prefill of messages cannot continue it.
        if choice.legacy_text {
            self.content = true;
            self.not_continuable = true;
        }
        match choice.content {
            Content::None => {}
            Content::Text(text) => {
                if !text.is_empty() {
                    self.content = true;
                    if choice.index == 0 {
                        self.text = Some(match self.text.take() {
                            None => text,
                            Some(before) => Cow::Owned(before.into_owned() + &text),
                        });
                    }
                }
            }
            Content::Other { present } => {
                self.content |= present;
                self.not_continuable = true;
            }
        }
        self.content |= choice.reasoning;
        if choice.not_text {
            self.content = true;
            self.not_continuable = true;
        }
    }
}

/// Reads the chunks of one stream, each as [`ChunkView::read`] does,
/// without walking again what a chunk shares with the one before: the
/// chunks of a stream start alike (`id`, `object`, `created`, `model`,
/// `system_fingerprint` — most of a small chunk's bytes) before the
/// `choices` that tell them apart. The same bytes read the same way, so a
/// chunk that starts with the last one's quiet prefix (its members before
/// the first that matters, checked whole) is read from where that prefix
/// ends, to the same verdict.
///
/// ```
/// use tollgate_core::ChunkReader;
///
/// let mut reader = ChunkReader::default();
/// let first = br#"{"id":"c1","model":"m","choices":[{"delta":{"content":"Hi"}}]}"#;
/// let next = br#"{"id":"c1","model":"m","choices":[{"delta":{"content":"!"}}]}"#;
/// assert_eq!(reader.read(first).unwrap().text.as_deref(), Some("Hi"));
/// assert_eq!(reader.read(next).unwrap().text.as_deref(), Some("!"));
/// assert!(reader.read(br#"{"id":"c1","model":"m","choices":[}"#).is_err());
/// ```
#[derive(Debug, Default)]
pub struct ChunkReader {
    /// The quiet prefix of the last chunk read from its start.
    prefix: Vec<u8>,
}

impl ChunkReader {
    /// Reads the data of one stream event, as [`ChunkView::read`] does.
    ///
    /// # Errors
    ///
    /// As [`ChunkView::read`].
    pub fn read<'a>(&mut self, data: &'a [u8]) -> Result<ChunkView<'a>, Malformed> {
        if !self.prefix.is_empty() && data.starts_with(&self.prefix) {
            return ChunkView::walk(data, self.prefix.len()).0;
        }
        let (chunk, quiet) = ChunkView::walk(data, 0);
        self.prefix.clear();
        self.prefix.extend_from_slice(&data[..quiet]);
        chunk
    }
}

/// What one of `choices` tells the chunk, its fields weighed as they are
/// read (each [`Loose`], then dropped: nothing of a choice is kept but
/// this).
#[derive(Debug, Default)]
struct ChoiceFacts<'a> {
    /// Its `index` when that is a `u64`, else 0.
    index: u64,
    finish: Finish,
    /// `/v1/completions`' `text`, present.
    legacy_text: bool,
    /// Its `delta.content`.
    content: Content<'a>,
    /// `delta.reasoning_content` or `delta.reasoning`, present.
    reasoning: bool,
    /// `delta.refusal`, `delta.tool_calls` or `delta.function_call`,
    /// present.
    not_text: bool,
}

/// A choice's `finish_reason`.
#[derive(Debug, Default, Clone, Copy)]
enum Finish {
    /// `null`, or none.
    #[default]
    None,
    /// `"error"`.
    Error,
    /// Any other value.
    Other,
}

impl Finish {
    fn of(reason: &Loose<'_>) -> Finish {
        match reason {
            Loose::Null => Finish::None,
            Loose::Text(reason) if reason == "error" => Finish::Error,
            _ => Finish::Other,
        }
    }
}

/// A delta's `content`.
#[derive(Debug, Default)]
enum Content<'a> {
    /// `null`, or none.
    #[default]
    None,
    /// Text.
    Text(Cow<'a, str>),
    /// Anything else (a list of parts): whether it holds anything.
    Other { present: bool },
}

impl<'a> Content<'a> {
    fn of(content: Loose<'a>) -> Content<'a> {
        match content {
            Loose::Null => Content::None,
            Loose::Text(text) => Content::Text(text),
            other => Content::Other {
                present: other.is_present(),
            },
        }
    }
}

/// A choice's fields, as serde's derive names them.
const CHOICE_FIELDS: [&[u8]; 4] = [b"index", b"delta", b"finish_reason", b"text"];

/// A delta's fields, as serde's derive names them.
const DELTA_FIELDS: [&[u8]; 6] = [
    b"content",
    b"reasoning_content",
    b"reasoning",
    b"refusal",
    b"tool_calls",
    b"function_call",
];

impl<'a> ChoiceFacts<'a> {
    /// A choice, as serde's derive reads a struct: an object (unknown
    /// fields skipped, a known one at most once) or an array of its fields
    /// in order.
    fn read(cursor: &mut Cursor<'a>) -> Step<ChoiceFacts<'a>> {
        let mut choice = ChoiceFacts::default();
        fields(cursor, &CHOICE_FIELDS, |cursor, field| {
            match field {
                0 => {
                    if let Loose::Number(index) = loose(cursor)? {
                        choice.index = index;
                    }
                }
                1 => choice.read_delta(cursor)?,
                2 => choice.finish = Finish::of(&loose(cursor)?),
                _ => choice.legacy_text = loose(cursor)?.is_present(),
            }
            Ok(())
        })?;
        Ok(choice)
    }

    /// `delta`: `null` (none), or a delta read as [`ChoiceFacts::read`]
    /// reads a choice.
    fn read_delta(&mut self, cursor: &mut Cursor<'a>) -> Step {
        if cursor.peek() == Some(b'n') {
            return cursor.literal(b"null");
        }
        fields(cursor, &DELTA_FIELDS, |cursor, field| {
            let value = loose(cursor)?;
            match field {
                0 => self.content = Content::of(value),
                1 | 2 => self.reasoning |= value.is_present(),
                _ => self.not_text |= value.is_present(),
            }
            Ok(())
        })
    }
}

/// The fields of a struct as serde's derive reads them from JSON: from an
/// object, each known field (its index in `names`) at most once, any other
/// skipped; or from an array, by position, at most one element per field.
/// `field` reads the value of each.
fn fields<'a>(
    cursor: &mut Cursor<'a>,
    names: &[&[u8]],
    mut field: impl FnMut(&mut Cursor<'a>, usize) -> Step,
) -> Step {
    match cursor.peek() {
        Some(b'{') => {
            cursor.expect(b'{')?;
            let mut seen = 0u32;
            cursor.members(|cursor, key| {
                let Some(index) = names.iter().position(|name| *name == key) else {
                    return cursor.value();
                };
                if seen & (1 << index) != 0 {
                    // Serde's derive: "duplicate field".
                    return Err(Malformed);
                }
                seen |= 1 << index;
                field(cursor, index)
            })
        }
        Some(b'[') => {
            cursor.expect(b'[')?;
            for index in 0..names.len() {
                match cursor.peek() {
                    Some(b']') => break,
                    _ if index == 0 => {}
                    Some(b',') => {
                        cursor.expect(b',')?;
                        if cursor.peek() == Some(b']') {
                            return Err(Malformed);
                        }
                    }
                    _ => return Err(Malformed),
                }
                field(cursor, index)?;
            }
            // An element more than the struct has fields is an error.
            cursor.expect(b']')
        }
        _ => Err(Malformed),
    }
}

/// A field read without insisting on its type, so that a provider's
/// variation (content as a list of parts, reasoning as an object) is never
/// mistaken for a malformed event.
#[derive(Debug, Default)]
enum Loose<'a> {
    #[default]
    Null,
    Text(Cow<'a, str>),
    Number(u64),
    List(usize),
    Other,
}

impl Loose<'_> {
    /// Whether the field carries anything: a non-empty text or list, or any
    /// other value.
    fn is_present(&self) -> bool {
        match self {
            Loose::Null => false,
            Loose::Text(text) => !text.is_empty(),
            Loose::List(n) => *n > 0,
            Loose::Number(_) | Loose::Other => true,
        }
    }
}

/// Any value, as serde's `deserialize_any` hands it to a visitor: text
/// checked as serde checks a string it reads, a number as a `u64` when it
/// is one, a list by its length.
fn loose<'a>(cursor: &mut Cursor<'a>) -> Step<Loose<'a>> {
    Ok(match cursor.peek().ok_or(Malformed)? {
        b'"' => {
            cursor.expect(b'"')?;
            Loose::Text(cursor.text()?)
        }
        b'n' => {
            cursor.literal(b"null")?;
            Loose::Null
        }
        b't' => {
            cursor.literal(b"true")?;
            Loose::Other
        }
        b'f' => {
            cursor.literal(b"false")?;
            Loose::Other
        }
        b'[' => Loose::List(cursor.array_length()?),
        b'{' => {
            cursor.expect(b'{')?;
            cursor.members(|cursor, _| cursor.value())?;
            Loose::Other
        }
        b'-' | b'0'..=b'9' => number(cursor)?,
        _ => return Err(Malformed),
    })
}

/// A number: a `u64` when it is a plain integer in range; otherwise serde
/// reads it as an `i64` or an `f64`, or rejects it as out of range — its
/// call, on the number's text alone (rare: an index is a small integer).
fn number<'a>(cursor: &mut Cursor<'a>) -> Step<Loose<'a>> {
    let start = cursor.position();
    cursor.eat(b'-');
    cursor.number()?;
    let text = &cursor.json()[start..cursor.position()];
    let plain = text.iter().try_fold(0u64, |value, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    });
    if let Some(value) = plain {
        return Ok(Loose::Number(value));
    }
    serde_json::from_slice::<f64>(text)
        .map(|_| Loose::Other)
        .map_err(|_| Malformed)
}

#[cfg(test)]
mod serde_oracle;

#[cfg(test)]
mod tests;
