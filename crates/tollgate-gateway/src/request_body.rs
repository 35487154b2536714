//! Reading a request body at ingress, bounded in size, in time, and in the
//! memory all the bodies still arriving may hold together.
//!
//! A client with a valid key could otherwise send `Content-Length` and part
//! of the body, then stall: the connection and the bytes sent so far stay
//! held until it leaves (50 such 10 MB bodies once pinned 527 MB). Here:
//!
//! - the whole body must arrive within `request_body_timeout`, and no gap
//!   between two of its chunks may pass `request_body_idle_timeout`; a body
//!   that stalls is answered 408;
//! - the body is copied into one buffer as bytes arrive, and ends up exactly
//!   the body's size when the length was declared. A `Content-Length` alone,
//!   which a client can state without sending a byte, costs nothing: the
//!   first [`UNBUDGETED`] bytes of each body are its own, and only a body
//!   that outgrows them takes all it can still need (its declared length,
//!   else the limit) from one shared budget (`request_body_memory_mb`) at
//!   once, or waits for it (the client is not read meanwhile, and TCP flow
//!   control holds the rest in its kernel buffers) under the whole-body
//!   deadline: bodies being read hold at most the budget, plus
//!   [`UNBUDGETED`] each, plus hyper's read buffer per connection (at most
//!   about 400 KiB).
//!
//! A body that arrives in one piece — most chat requests — is passed on as
//! hyper read it, without a copy; any other is copied chunk by chunk as it
//! comes, so that hyper reuses its read buffer rather than each stalled
//! body pinning one.

use std::pin::pin;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::StatusCode;
use http_body::Body;
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};
use tollgate_core::{BoxError, ErrorClass, Failure};

use crate::config::TollgateSettings;
use crate::metrics::{Metrics, STALLED_BODY, STALLED_CHUNK};

/// Default of `tollgate.request_body_timeout`: the time a client has to
/// send a whole request body.
pub const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default request size limit when `general_settings.max_request_size_mb` is
/// not set.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// Default of `tollgate.request_body_idle_timeout`: the longest silence
/// inside a request body.
pub const DEFAULT_REQUEST_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `tollgate.request_body_memory_mb`, in bytes: what the request
/// bodies still arriving may hold together, beyond their first
/// `UNBUDGETED` bytes each.
pub const DEFAULT_REQUEST_BODY_MEMORY: usize = 64 * 1024 * 1024;
/// What each body may hold outside the shared budget: a typical chat request
/// never waits for it.
pub(crate) const UNBUDGETED: usize = 64 * 1024;
/// The smallest buffer a body grows into.
const MIN_CAPACITY: usize = 8 * 1024;

/// The limits every request body is read under, and the memory budget they
/// share.
#[derive(Debug)]
pub(crate) struct BodyReader {
    max_bytes: usize,
    timeout: Duration,
    idle_timeout: Duration,
    /// One permit per byte of buffer beyond each body's first
    /// [`UNBUDGETED`].
    budget: Semaphore,
    metrics: Metrics,
}

impl BodyReader {
    /// Bodies of at most `max_bytes`, sent within `timeout` with no gap over
    /// `idle_timeout`, sharing `memory` bytes (raised to `max_bytes` if
    /// lower, so that one body of the largest size can always be read).
    pub(crate) fn new(
        max_bytes: usize,
        timeout: Duration,
        idle_timeout: Duration,
        memory: usize,
        metrics: Metrics,
    ) -> Self {
        BodyReader {
            max_bytes,
            timeout,
            idle_timeout,
            budget: Semaphore::new(memory.max(max_bytes).min(Semaphore::MAX_PERMITS)),
            metrics,
        }
    }

    /// The limits `tollgate.request_body_*` set, for bodies of at most
    /// `max_bytes`; an error says why `request_body_memory_mb` is invalid.
    pub(crate) fn from_config(
        settings: &TollgateSettings,
        max_bytes: usize,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let memory = match settings.request_body_memory_mb {
            Some(mb) => {
                let bytes = (mb * 1024.0 * 1024.0) as usize;
                if bytes < max_bytes {
                    return Err(format!(
                        "must be at least general_settings.max_request_size_mb ({} MiB): \
                         a body of the largest size must fit",
                        max_bytes as f64 / (1024.0 * 1024.0)
                    ));
                }
                bytes
            }
            None => DEFAULT_REQUEST_BODY_MEMORY,
        };
        Ok(BodyReader::new(
            max_bytes,
            settings
                .request_body_timeout
                .unwrap_or(DEFAULT_REQUEST_BODY_TIMEOUT),
            settings
                .request_body_idle_timeout
                .unwrap_or(DEFAULT_REQUEST_BODY_IDLE_TIMEOUT),
            memory,
            metrics.clone(),
        ))
    }

    /// Reads a whole body. `declared` is its `Content-Length`: one over the
    /// limit is refused before a byte is read.
    pub(crate) async fn read<B>(&self, body: B, declared: Option<u64>) -> Result<Bytes, Failure>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        if declared.is_some_and(|len| len > self.max_bytes as u64) {
            return Err(too_large(self.max_bytes));
        }
        let deadline = Instant::now() + self.timeout;
        let mut body = pin!(body);
        let mut buffer = Buffer {
            bytes: Vec::new(),
            // Declared lengths over the limit were refused above.
            ceiling: declared.map_or(self.max_bytes, |len| len as usize),
            declared: declared.is_some(),
            budget: &self.budget,
            reserved: 0,
        };
        // The size of the last chunk: about what the next will need.
        let mut last = 0;
        while !body.is_end_stream() {
            // Room for what comes next before reading it: a body waiting for
            // the budget holds none of hyper's buffers, only its own.
            if let Some(needed) = buffer.room_for(last) {
                buffer.grow(needed, deadline).await?;
            }
            let quiet_until = (Instant::now() + self.idle_timeout).min(deadline);
            let data = match timeout_at(quiet_until, body.frame()).await {
                // `Bytes` (hyper's) comes out as it is, without a copy.
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => data.copy_to_bytes(data.remaining()),
                    // Trailers: nothing a chat request uses.
                    Err(_) => continue,
                },
                Ok(Some(Err(_))) => return Err(unreadable()),
                Ok(None) => break,
                Err(_) => return Err(self.stalled(quiet_until == deadline)),
            };
            if buffer.bytes.len() + data.len() > self.max_bytes {
                return Err(too_large(self.max_bytes));
            }
            // A body in one piece is passed on as it came.
            if buffer.bytes.is_empty() && body.is_end_stream() {
                return Ok(data);
            }
            // Anything else is copied at once, so that hyper reuses its
            // buffer instead of this body pinning it.
            last = data.len();
            buffer.push(&data, deadline).await?;
        }
        Ok(buffer.finish())
    }

    fn stalled(&self, whole_body: bool) -> Failure {
        let (phase, message) = if whole_body {
            (
                STALLED_BODY,
                format!(
                    "the request body did not arrive within {} s",
                    self.timeout.as_secs_f64()
                ),
            )
        } else {
            (
                STALLED_CHUNK,
                format!(
                    "the request body stalled for more than {} s",
                    self.idle_timeout.as_secs_f64()
                ),
            )
        };
        self.metrics.client_timeout(phase);
        Failure::new(ErrorClass::BadRequest, message)
            .with_status(StatusCode::REQUEST_TIMEOUT)
            .with_code("request_body_timeout")
    }
}

/// A body being copied together, and its share of the budget.
struct Buffer<'a> {
    bytes: Vec<u8>,
    /// The most the body can be: its declared length, else the limit.
    ceiling: usize,
    declared: bool,
    budget: &'a Semaphore,
    /// Permits taken from `budget`: none, or all the body can need beyond
    /// [`UNBUDGETED`].
    reserved: usize,
}

impl Buffer<'_> {
    /// The size to grow to before reading a chunk like the last one, when
    /// there is no room for it and the body may still grow.
    fn room_for(&self, chunk: usize) -> Option<usize> {
        let len = self.bytes.len();
        let needed = (len + chunk).min(self.ceiling);
        (len > 0 && needed > self.bytes.capacity()).then_some(needed)
    }

    /// Appends `data`, growing the buffer first if it must.
    async fn push(&mut self, data: &[u8], deadline: Instant) -> Result<(), Failure> {
        let needed = self.bytes.len() + data.len();
        if needed > self.bytes.capacity() {
            self.grow(needed, deadline).await?;
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    /// Makes room for `needed` bytes (within the limit: the caller checks).
    ///
    /// Up to [`UNBUDGETED`] the buffer doubles freely. Past it, the body
    /// first takes from the budget all it can still need — waiting, until
    /// `deadline` at most, while holding no more than its own share. Taking
    /// it in one go means that no body ever waits while holding part of the
    /// budget: bodies growing step by step would each hold part and wait
    /// for more, all of them until their deadline. A declared length is
    /// then allocated whole (its pages cost nothing until written); a body
    /// of unknown length keeps doubling.
    async fn grow(&mut self, needed: usize, deadline: Instant) -> Result<(), Failure> {
        // A body longer than declared is hyper's to refuse; it is not one
        // to miscount here.
        self.ceiling = self.ceiling.max(needed);
        if needed > UNBUDGETED && self.reserved == 0 {
            self.reserve(self.ceiling - UNBUDGETED, deadline).await?;
        }
        let capacity = if self.reserved == 0 {
            needed
                .max(self.bytes.capacity() * 2)
                .clamp(MIN_CAPACITY, UNBUDGETED)
                .min(self.ceiling)
        } else if self.declared {
            self.ceiling
        } else {
            needed.max(self.bytes.capacity() * 2).min(self.ceiling)
        };
        self.bytes.reserve_exact(capacity - self.bytes.len());
        Ok(())
    }

    async fn reserve(&mut self, bytes: usize, deadline: Instant) -> Result<(), Failure> {
        // At most the largest body, which the budget is never below.
        let permits = u32::try_from(bytes).map_err(|_| busy())?;
        match timeout_at(deadline, self.budget.acquire_many(permits)).await {
            Ok(Ok(permit)) => {
                // Given back by hand when the buffer goes (see `Drop`).
                permit.forget();
                self.reserved += bytes;
                Ok(())
            }
            // The semaphore is never closed.
            Ok(Err(_)) | Err(_) => Err(busy()),
        }
    }

    fn finish(mut self) -> Bytes {
        let mut bytes = std::mem::take(&mut self.bytes);
        // Without a declared length the doubling may have overshot; what
        // the request keeps should be the body, not the slack.
        if bytes.capacity() > bytes.len() + bytes.len() / 8 {
            bytes.shrink_to_fit();
        }
        Bytes::from(bytes)
    }
}

impl Drop for Buffer<'_> {
    /// The budget covers bodies being read: once read (or refused), a body's
    /// share is free for the next.
    fn drop(&mut self) {
        self.budget.add_permits(self.reserved);
    }
}

fn too_large(limit: usize) -> Failure {
    Failure::new(
        ErrorClass::BadRequest,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    .with_code("request_too_large")
}

fn unreadable() -> Failure {
    Failure::new(ErrorClass::BadRequest, "the request body could not be read")
}

/// The budget stayed taken until the body's deadline: other bodies hold the
/// memory, and this client is not at fault.
fn busy() -> Failure {
    Failure::new(
        ErrorClass::Internal,
        "the gateway is reading too many request bodies at once; retry shortly",
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
    .with_code("server_busy")
    .with_retry_after(Duration::from_secs(1))
}

#[cfg(test)]
#[path = "request_body_tests.rs"]
mod tests;
