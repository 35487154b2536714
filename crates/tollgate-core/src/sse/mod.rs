//! Server-sent events: an incremental parser and an encoder.
//!
//! LLM APIs stream completions as `text/event-stream`, one
//! `data: {json}\n\n` event per delta and `data: [DONE]` at the end. A layer
//! that watches such a stream (to count tokens, settle cost, or notice an
//! error sent mid-stream) feeds body chunks to an [`SseParser`] as they pass
//! through and reads [`Frame`]s back; the functions [`write_data`],
//! [`write_event`] and [`write_comment`] produce the same format.
//!
//! The parser works on bytes and, for events that arrive within one chunk,
//! hands out slices of that chunk, so watching a stream does not copy it.
//!
//! # Example
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use tollgate_core::sse::{self, Frame, SseParser};
//!
//! # fn main() -> Result<(), sse::SseError> {
//! let mut parser = SseParser::new();
//! let mut events = Vec::new();
//!
//! // Network chunks rarely line up with events.
//! for chunk in [
//!     &b": OPENROUTER PROCESSING\n\ndata: {\"choices\""[..],
//!     b":[]}\r",
//!     b"\n\r\ndata: [DONE]\n\n",
//! ] {
//!     parser.push(Bytes::copy_from_slice(chunk));
//!     while let Some(frame) = parser.next_frame()? {
//!         if let Frame::Event(event) = frame {
//!             events.push(event);
//!         }
//!     }
//! }
//! // At end of body: `Err(SseError::Truncated)` here would mean the
//! // upstream stopped in the middle of an event.
//! assert_eq!(parser.finish()?, None);
//!
//! assert_eq!(events[0].data, "{\"choices\":[]}");
//! assert!(events[1].is_done());
//!
//! let mut out = BytesMut::new();
//! sse::write_data(&mut out, &events[0].data);
//! out.extend_from_slice(sse::DONE);
//! assert_eq!(out, "data: {\"choices\":[]}\n\ndata: [DONE]\n\n");
//! # Ok(())
//! # }
//! ```

mod error;
mod event;
mod parser;
mod shared;
mod split;
mod writer;

pub use error::{InvalidField, SseError};
pub use event::{Event, Frame, single_line_data};
pub use parser::SseParser;
pub use shared::{EventReader, ReadEvents, SharedEvents};
pub use split::{EventSplitter, Events};
pub use writer::{DONE, write_comment, write_data, write_event, write_frame};
