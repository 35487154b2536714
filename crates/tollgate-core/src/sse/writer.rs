use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use super::{Event, Frame, InvalidField};

/// The OpenAI end-of-stream event, already encoded.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// Encodes an event whose only field is `data`: the common case of an
/// OpenAI-style stream.
///
/// Line breaks in `data` (`\n`, `\r\n` or `\r`) split it into several `data:`
/// lines, which a parser joins back with `\n`.
pub fn write_data(buf: &mut BytesMut, data: &[u8]) {
    // "data: " + "\n" per line, plus the blank line; exact for one-line data.
    buf.reserve(data.len() + 8);
    write_lines(buf, b"data", data);
    buf.put_u8(b'\n');
}

/// Encodes an event, so that parsing the output yields `event` again.
///
/// Data is written as by [`write_data`]; since SSE cannot carry `\r` inside
/// data, a `\r` or `\r\n` in it comes back as `\n`.
///
/// # Errors
///
/// If `event.event` contains a line break or `event.id` contains a line
/// break or NUL. Nothing is written then.
pub fn write_event(buf: &mut BytesMut, event: &Event) -> Result<(), InvalidField> {
    let event_name = event.event.as_deref();
    let id = event.id.as_deref();
    if event_name.is_some_and(|v| v.iter().any(|&b| b == b'\n' || b == b'\r')) {
        return Err(InvalidField { field: "event" });
    }
    if id.is_some_and(|v| v.iter().any(|&b| b == b'\n' || b == b'\r' || b == 0)) {
        return Err(InvalidField { field: "id" });
    }

    if let Some(name) = event_name {
        write_field(buf, b"event", name);
    }
    if let Some(id) = id {
        write_field(buf, b"id", id);
    }
    if let Some(retry) = event.retry {
        writeln!(buf, "retry: {retry}").expect("writing to a BytesMut cannot fail");
    }
    write_data(buf, &event.data);
    Ok(())
}

/// Encodes a comment, followed by a blank line.
///
/// The blank line is harmless to parsers and matches what upstreams send as
/// keep-alives (`: OPENROUTER PROCESSING\n\n`); some intermediaries only pass
/// a chunk on at an event boundary. Text with line breaks becomes several
/// comment lines, so it parses back as several [`Frame::Comment`]s.
pub fn write_comment(buf: &mut BytesMut, text: &[u8]) {
    buf.reserve(text.len() + 4);
    write_lines(buf, b"", text);
    buf.put_u8(b'\n');
}

/// Encodes a frame with [`write_event`] or [`write_comment`].
///
/// # Errors
///
/// As for [`write_event`].
pub fn write_frame(buf: &mut BytesMut, frame: &Frame) -> Result<(), InvalidField> {
    match frame {
        Frame::Event(event) => write_event(buf, event),
        Frame::Comment(text) => {
            write_comment(buf, text);
            Ok(())
        }
    }
}

/// Writes `value` as one `name: line` per line of it.
fn write_lines(buf: &mut BytesMut, name: &[u8], mut value: &[u8]) {
    loop {
        let Some(end) = value.iter().position(|&b| b == b'\n' || b == b'\r') else {
            write_field(buf, name, value);
            return;
        };
        write_field(buf, name, &value[..end]);
        let ending = if value[end..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        value = &value[end + ending..];
    }
}

/// Writes one `name: value` line; `value` must hold no line break.
fn write_field(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    buf.put_slice(name);
    buf.put_u8(b':');
    // The space is optional, but a value starting with a space needs it so
    // that the parser strips this one and keeps the value's own.
    if !value.is_empty() {
        buf.put_u8(b' ');
        buf.put_slice(value);
    }
    buf.put_u8(b'\n');
}
