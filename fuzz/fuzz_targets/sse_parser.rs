//! The SSE parser and the event splitter, on any bytes cut at any points.
//!
//! Input: one byte of chunking seed, then the stream. Checked, besides "no
//! panic, no hang":
//! - the parser yields the same frames (and the same end: clean, truncated
//!   or a line too long) whether the stream comes whole or in chunks;
//! - every frame it yields encodes (`write_frame`) to bytes that parse back
//!   to the same frame;
//! - the splitter's events, concatenated, are the stream's bytes minus the
//!   ones it holds back.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tollgate_core::sse::{self, EventSplitter, Frame, SseError, SseParser};

/// A line limit small enough for the fuzzer to cross.
const MAX_LINE: usize = 64;

fuzz_target!(|input: &[u8]| {
    let Some((&seed, stream)) = input.split_first() else {
        return;
    };
    let chunks = cut(stream, seed);
    for max in [SseParser::DEFAULT_MAX_LINE_LEN, MAX_LINE] {
        let whole = parse(&[Bytes::copy_from_slice(stream)], max);
        let chunked = parse(&chunks, max);
        assert_eq!(whole, chunked, "chunking changed what was parsed");
        for frame in whole.0.iter() {
            round_trip(frame);
        }
    }
    split(stream, &chunks);
});

/// Cuts `stream` into chunks whose lengths follow from `seed` (0 to 15
/// bytes, empty chunks included), so that CR-LF pairs, a BOM and fields are
/// cut in every place.
fn cut(stream: &[u8], seed: u8) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut state = u32::from(seed) | 1;
    let mut rest = stream;
    while !rest.is_empty() {
        // xorshift: cheap, deterministic for a given input.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let len = (state % 16) as usize;
        let len = len.min(rest.len());
        chunks.push(Bytes::copy_from_slice(&rest[..len]));
        rest = &rest[len..];
    }
    chunks
}

/// Every frame, and how the stream ended.
fn parse(chunks: &[Bytes], max: usize) -> (Vec<Frame>, Result<(), SseError>) {
    let mut parser = SseParser::with_max_line_len(max);
    let mut frames = Vec::new();
    for chunk in chunks {
        parser.push(chunk.clone());
        loop {
            match parser.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => return (frames, Err(error)),
            }
        }
    }
    loop {
        match parser.finish() {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, Ok(())),
            Err(error) => return (frames, Err(error)),
        }
    }
}

/// A frame the parser yielded is one the writer can encode, and the
/// encoding parses back to it.
fn round_trip(frame: &Frame) {
    let mut buf = BytesMut::new();
    sse::write_frame(&mut buf, frame).expect("a parsed frame encodes");
    let (again, end) = parse(&[buf.freeze()], SseParser::DEFAULT_MAX_LINE_LEN);
    assert_eq!(end, Ok(()));
    assert_eq!(again.as_slice(), std::slice::from_ref(frame));
}

/// The splitter loses and invents no byte.
fn split(stream: &[u8], chunks: &[Bytes]) {
    let mut splitter = EventSplitter::with_max_event_len(4 * MAX_LINE);
    let mut out = Vec::new();
    for chunk in chunks {
        for event in splitter.push(chunk.clone()) {
            assert!(!event.is_empty());
            out.extend_from_slice(&event);
        }
        if splitter.overflowed() {
            return;
        }
    }
    let held = splitter.pending();
    assert_eq!(out.len() + held, stream.len());
    assert_eq!(out.as_slice(), &stream[..out.len()]);
}
