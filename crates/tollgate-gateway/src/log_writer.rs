//! A log writer that never makes a request wait on the terminal.
//!
//! `tracing-subscriber` formats each event into a line and hands it to a
//! writer. Writing it to stderr then and there costs a `write(2)` per line
//! on the thread serving the request — about a tenth of the gateway's CPU
//! per request under load. [`LogWriter`] appends the line to a shared
//! buffer instead (a short lock, no allocation once the buffer has grown)
//! and one background thread writes whatever has gathered with a single
//! syscall, then pauses for [`PAUSE`], so under load many lines go out per
//! write and a line never costs its request a wake-up: only a line that
//! finds the writer asleep on an empty buffer wakes it.
//!
//! The buffer is bounded: past [`MAX_PENDING`] bytes new lines are dropped
//! and counted, and the count is written out as a line of its own once
//! there is room again — a slow terminal cannot grow the gateway's memory.
//! [`LogGuard`] flushes what is pending when it is dropped (at exit).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

/// The most bytes of log lines waiting to be written.
pub const MAX_PENDING: usize = 4 * 1024 * 1024;

/// How long the writer lets lines gather after each write: the most a line
/// waits behind a busy writer.
pub const PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

#[derive(Debug, Default)]
struct Pending {
    lines: Vec<u8>,
    dropped: u64,
    closed: bool,
    /// The writer is asleep waiting for a line.
    waiting: bool,
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hands log lines to the background writer; a `MakeWriter` for
/// `tracing_subscriber::fmt().with_writer(..)`.
#[derive(Debug, Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Ends the background writer, after it has written every pending line.
#[derive(Debug)]
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer of log lines to `out` on a thread of its own, and the guard
/// that flushes it.
pub fn log_writer<W: Write + Send + 'static>(out: W) -> std::io::Result<(LogWriter, LogGuard)> {
    let shared = Arc::new(Shared::default());
    let thread = std::thread::Builder::new()
        .name(String::from("tollgate-log"))
        .spawn({
            let shared = Arc::clone(&shared);
            move || write_lines(&shared, out)
        })?;
    Ok((
        LogWriter {
            shared: Arc::clone(&shared),
        },
        LogGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn write_lines<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let (dropped, closed) = {
            let mut pending = shared.lock();
            while pending.lines.is_empty() && pending.dropped == 0 && !pending.closed {
                pending.waiting = true;
                pending = shared
                    .ready
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            pending.waiting = false;
            std::mem::swap(&mut batch, &mut pending.lines);
            (std::mem::take(&mut pending.dropped), pending.closed)
        };
        // A terminal that fails cannot be told; the lines are lost.
        let _ = out.write_all(&batch);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "tollgate: {dropped} log lines dropped: the log output could not keep up"
            );
        }
        let _ = out.flush();
        batch.clear();
        if closed && shared.lock().lines.is_empty() {
            return;
        }
        if !closed {
            std::thread::sleep(PAUSE);
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.shared.lock();
        if pending.closed || pending.lines.len() + line.len() > MAX_PENDING {
            pending.dropped += 1;
            return Ok(line.len());
        }
        pending.lines.extend_from_slice(line);
        // Only a writer asleep on an empty buffer is woken, once: under
        // load the lines pile up while it writes or pauses.
        let wake = std::mem::take(&mut pending.waiting);
        drop(pending);
        if wake {
            self.shared.ready.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        self.clone()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let mut pending = self.shared.lock();
        pending.closed = true;
        drop(pending);
        self.shared.ready.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what the background thread writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_is_dropped() {
        let sink = Sink::default();
        let (mut writer, guard) = log_writer(sink.clone()).unwrap();
        for i in 0..1000 {
            writeln!(writer, "line {i}").unwrap();
        }
        drop(guard);
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(written, expected);
    }

    #[test]
    fn lines_past_the_bound_are_dropped_and_counted() {
        let shared = Arc::new(Shared::default());
        let mut writer = LogWriter {
            shared: Arc::clone(&shared),
        };
        // No thread drains it: fill it to the bound.
        let line = vec![b'x'; 1024];
        for _ in 0..(MAX_PENDING / 1024 + 3) {
            writer.write_all(&line).unwrap();
        }
        let pending = shared.lock();
        assert_eq!(pending.lines.len(), MAX_PENDING);
        assert_eq!(pending.dropped, 3);
    }

    #[test]
    fn the_drop_count_is_reported() {
        let sink = Sink::default();
        let (writer, guard) = log_writer(sink.clone()).unwrap();
        writer.shared.lock().dropped = 5;
        writer.shared.ready.notify_one();
        drop(guard);
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(written.contains("5 log lines dropped"), "{written}");
    }
}
