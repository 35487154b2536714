//! Where a client's bytes stand in a request head: a scanner over what a
//! connection reads, with no tokio in it.
//!
//! hyper hands a request to the service only once its head is complete, and
//! says nothing about one that never completes. The HTTP/1 head has hyper's
//! own header-read timer; HTTP/2 has none, and a client that sends a
//! `HEADERS` frame without `END_HEADERS` — or a `HEADERS` frame header
//! announcing a payload it never sends — holds the connection for as long as
//! it likes. The scanner follows the HTTP/2 framing of the bytes read (frame
//! headers and payload lengths only: payloads are skipped, never copied or
//! decoded) so the connection's timer can tell an unfinished header block
//! from an idle connection.

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The length of an HTTP/2 frame header.
const FRAME_HEADER: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_HEADERS: u8 = 0x4;

/// What the scanner has seen of a connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Fewer bytes than the HTTP/2 preface, all of them matching it.
    Undecided,
    /// The first bytes were not the HTTP/2 preface.
    Http1,
    /// The HTTP/2 preface, then frames.
    Http2,
}

/// Follows the framing of the bytes a server connection reads.
#[derive(Debug, Clone)]
pub(crate) struct FrameScanner {
    protocol: Protocol,
    /// Bytes of the preface matched so far.
    preface: usize,
    /// The frame header being read.
    header: [u8; FRAME_HEADER],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    payload_left: usize,
    /// The current frame ends its header block.
    ends_block: bool,
    /// A header block (or the `HEADERS` frame starting one) is incomplete.
    in_block: bool,
}

impl Default for FrameScanner {
    fn default() -> Self {
        FrameScanner {
            protocol: Protocol::Undecided,
            preface: 0,
            header: [0; FRAME_HEADER],
            header_len: 0,
            payload_left: 0,
            ends_block: false,
            in_block: false,
        }
    }
}

impl FrameScanner {
    /// What the connection speaks, as far as the bytes so far tell.
    pub(crate) fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether a request head is incomplete at the end of the bytes
    /// scanned: an HTTP/2 header block from its `HEADERS` frame header to
    /// the end of the frame that carries `END_HEADERS`, or a preface begun
    /// and not finished. (HTTP/1 heads are the caller's to follow.)
    pub(crate) fn in_header_block(&self) -> bool {
        match self.protocol {
            Protocol::Undecided => self.preface > 0,
            Protocol::Http1 => false,
            Protocol::Http2 => self.in_block,
        }
    }

    /// Scans the next bytes read from the connection.
    pub(crate) fn scan(&mut self, mut bytes: &[u8]) {
        if self.protocol == Protocol::Undecided {
            let n = bytes.len().min(PREFACE.len() - self.preface);
            if bytes[..n] != PREFACE[self.preface..self.preface + n] {
                self.protocol = Protocol::Http1;
                return;
            }
            self.preface += n;
            bytes = &bytes[n..];
            if self.preface < PREFACE.len() {
                return;
            }
            self.protocol = Protocol::Http2;
        }
        if self.protocol == Protocol::Http1 {
            return;
        }
        while !bytes.is_empty() {
            if self.header_len < FRAME_HEADER {
                let n = bytes.len().min(FRAME_HEADER - self.header_len);
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER {
                    self.start_frame();
                }
            } else {
                let n = bytes.len().min(self.payload_left);
                self.payload_left -= n;
                bytes = &bytes[n..];
                if self.payload_left == 0 {
                    self.end_frame();
                }
            }
        }
    }

    /// A whole frame header has been read.
    fn start_frame(&mut self) {
        let [l0, l1, l2, kind, flags, ..] = self.header;
        self.payload_left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        match kind {
            TYPE_HEADERS => {
                self.in_block = true;
                self.ends_block = flags & FLAG_END_HEADERS != 0;
            }
            // A CONTINUATION outside a block is the peer's protocol error,
            // which h2 answers by closing the connection.
            TYPE_CONTINUATION => self.ends_block = flags & FLAG_END_HEADERS != 0,
            _ => self.ends_block = false,
        }
        if self.payload_left == 0 {
            self.end_frame();
        }
    }

    /// The current frame's payload has been read.
    fn end_frame(&mut self) {
        if self.ends_block {
            self.in_block = false;
            self.ends_block = false;
        }
        self.header_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn settings() -> Vec<u8> {
        frame(0x4, 0, 0, &[])
    }

    /// A connection's worth of bytes, and whether a head is open after each.
    fn conversation() -> Vec<(Vec<u8>, bool)> {
        vec![
            (PREFACE[..10].to_vec(), true),
            (PREFACE[10..].to_vec(), false),
            (settings(), false),
            // HEADERS without END_HEADERS: the block stays open through
            // the CONTINUATION that does not end it.
            (frame(TYPE_HEADERS, 0, 1, &[0x82, 0x86]), true),
            (frame(TYPE_CONTINUATION, 0, 1, &[0x84]), true),
            (
                frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &[0x41]),
                false,
            ),
            (frame(0x0, 0x1, 1, b"{}"), false),
            // A whole block in one frame.
            (frame(TYPE_HEADERS, FLAG_END_HEADERS, 3, &[0x82; 20]), false),
            (frame(0x6, 0, 0, &[0; 8]), false),
        ]
    }

    #[test]
    fn a_header_block_is_open_from_its_headers_frame_to_end_headers() {
        let mut scanner = FrameScanner::default();
        for (i, (bytes, open)) in conversation().into_iter().enumerate() {
            scanner.scan(&bytes);
            assert_eq!(scanner.in_header_block(), open, "after piece {i}");
        }
        assert_eq!(scanner.protocol(), Protocol::Http2);
    }

    #[test]
    fn a_headers_frame_whose_payload_never_comes_is_an_open_block() {
        let mut scanner = FrameScanner::default();
        scanner.scan(PREFACE);
        let whole = frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[0x82; 100]);
        scanner.scan(&whole[..20]);
        assert!(scanner.in_header_block());
        scanner.scan(&whole[20..]);
        assert!(!scanner.in_header_block());
    }

    #[test]
    fn http1_is_told_at_the_first_byte_that_differs() {
        let mut scanner = FrameScanner::default();
        scanner.scan(b"P");
        assert_eq!(scanner.protocol(), Protocol::Undecided);
        scanner.scan(b"OST /v1/chat/completions HTTP/1.1\r\n");
        assert_eq!(scanner.protocol(), Protocol::Http1);
        assert!(!scanner.in_header_block());
        let mut scanner = FrameScanner::default();
        scanner.scan(b"GET /health HTTP/1.1\r\n");
        assert_eq!(scanner.protocol(), Protocol::Http1);
    }

    proptest! {
        /// However the bytes are split into reads, the scanner ends where
        /// one read of them all ends.
        #[test]
        fn the_split_of_the_reads_does_not_matter(cuts in proptest::collection::vec(0usize..400, 0..12)) {
            let bytes: Vec<u8> = conversation().into_iter().flat_map(|(b, _)| b).collect();
            let mut whole = FrameScanner::default();
            whole.scan(&bytes);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut pieces = FrameScanner::default();
            let mut at = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                pieces.scan(&bytes[at..cut]);
                at = cut;
            }
            prop_assert_eq!(pieces.protocol(), whole.protocol());
            prop_assert_eq!(pieces.in_header_block(), whole.in_header_block());
            prop_assert_eq!(pieces.payload_left, whole.payload_left);
            prop_assert_eq!(pieces.header_len, whole.header_len);
        }
    }
}
