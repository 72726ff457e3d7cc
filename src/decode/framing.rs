//! Line framing shared by the line-based drivers (`nonin-ascii`, `json` on serial, and later
//! `masimo-ascii`, `lines`, `barcode`).
//!
//! Receives bytes in whatever chunks the transport delivered and emits complete lines: split on
//! LF, one trailing CR stripped, blank lines skipped (they carry nothing and a device that ends
//! lines with CR CR LF would otherwise produce them). The buffer never holds more than `max_len`
//! bytes: a line longer than that yields [`DecodeError::Oversized`] once, and the framer then
//! discards bytes up to the next LF and resynchronises there. [`LineFramer::finish`] reports a
//! trailing partial line, because a line without its terminator may be cut short.

use super::DecodeError;

/// One framed item: a complete line (without CR/LF) or the error of an oversized one.
pub type FramedLine = Result<Vec<u8>, DecodeError>;

/// A bounded line splitter. See the module docs.
#[derive(Debug, Clone)]
pub struct LineFramer {
    buf: Vec<u8>,
    max_len: usize,
    /// True after an oversized line was reported, until the next LF.
    discarding: bool,
}

impl LineFramer {
    /// A framer that accepts lines of at most `max_len` bytes (CR excluded). `max_len` of 0 is
    /// treated as 1.
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_len: max_len.max(1),
            discarding: false,
        }
    }

    /// The longest line accepted.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Feeds bytes; appends every line (or oversize error) they complete to `out`, in order.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<FramedLine>) {
        let mut rest = bytes;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    self.take(&rest[..nl], out);
                    self.end_line(out);
                    rest = &rest[nl + 1..];
                }
                None => {
                    self.take(rest, out);
                    rest = &[];
                }
            }
        }
    }

    /// End of stream: reports a buffered partial line as [`DecodeError::Malformed`] and clears
    /// the state, so the framer can be reused.
    pub fn finish(&mut self) -> Option<DecodeError> {
        let partial = std::mem::take(&mut self.buf);
        let was_discarding = std::mem::replace(&mut self.discarding, false);
        let len = strip_cr(&partial).len();
        if was_discarding || len == 0 {
            return None;
        }
        Some(DecodeError::Malformed(format!(
            "stream ended inside a line ({len} bytes without a newline)"
        )))
    }

    /// Appends a chunk that contains no LF to the current line, enforcing the bound.
    fn take(&mut self, chunk: &[u8], out: &mut Vec<FramedLine>) {
        if self.discarding {
            return;
        }
        // One byte of slack for a CR that the LF will make a terminator.
        if self.buf.len() + chunk.len() > self.max_len + 1 {
            self.buf.clear();
            self.discarding = true;
            out.push(Err(DecodeError::Oversized(self.max_len)));
            return;
        }
        self.buf.extend_from_slice(chunk);
    }

    fn end_line(&mut self, out: &mut Vec<FramedLine>) {
        if std::mem::replace(&mut self.discarding, false) {
            self.buf.clear();
            return;
        }
        let line = std::mem::take(&mut self.buf);
        let body = strip_cr(&line);
        if body.len() > self.max_len {
            out.push(Err(DecodeError::Oversized(self.max_len)));
        } else if !body.is_empty() {
            out.push(Ok(body.to_vec()));
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A line-based wire format: how long a line may be and what one line means.
pub trait LineFormat: Send {
    /// Longest line accepted; longer ones are an `Oversized` error and the stream resyncs.
    const MAX_LINE: usize;
    /// Decodes one complete line (without its CR LF).
    fn decode_line(line: &[u8], out: &mut Vec<super::DecodeEvent>);
}

/// The decoder of a [`LineFormat`]: a bounded [`LineFramer`] feeding `F::decode_line`.
pub struct LineDecoder<F> {
    framer: LineFramer,
    format: std::marker::PhantomData<F>,
}

impl<F: LineFormat> LineDecoder<F> {
    pub fn new() -> Self {
        Self {
            framer: LineFramer::new(F::MAX_LINE),
            format: std::marker::PhantomData,
        }
    }
}

impl<F: LineFormat> Default for LineDecoder<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: LineFormat> std::fmt::Debug for LineDecoder<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineDecoder")
            .field("framer", &self.framer)
            .finish()
    }
}

impl<F: LineFormat> super::Decoder for LineDecoder<F> {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<super::DecodeEvent>) {
        let mut lines = Vec::new();
        self.framer.feed(bytes, &mut lines);
        for line in lines {
            match line {
                Ok(line) => F::decode_line(&line, out),
                Err(e) => out.push(super::DecodeEvent::Error(e)),
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<super::DecodeEvent>) {
        if let Some(e) = self.framer.finish() {
            out.push(super::DecodeEvent::Error(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines(f: &mut LineFramer, bytes: &[u8]) -> Vec<FramedLine> {
        let mut out = Vec::new();
        f.feed(bytes, &mut out);
        out
    }

    #[test]
    fn lines_split_on_lf_and_lose_their_cr() {
        let mut f = LineFramer::new(64);
        let out = lines(&mut f, b"SPO2=097 HR=072\r\nSPO2=098 HR=071\n");
        assert_eq!(
            out,
            vec![
                Ok(b"SPO2=097 HR=072".to_vec()),
                Ok(b"SPO2=098 HR=071".to_vec())
            ]
        );
    }

    #[test]
    fn a_line_split_across_reads_is_joined() {
        let mut f = LineFramer::new(64);
        assert!(lines(&mut f, b"SPO2=0").is_empty());
        assert!(lines(&mut f, b"97 HR=072\r").is_empty());
        assert_eq!(lines(&mut f, b"\n"), vec![Ok(b"SPO2=097 HR=072".to_vec())]);
    }

    #[test]
    fn blank_lines_are_skipped() {
        let mut f = LineFramer::new(8);
        assert_eq!(lines(&mut f, b"\r\n\n\r\nab\r\n"), vec![Ok(b"ab".to_vec())]);
    }

    #[test]
    fn a_line_of_exactly_max_len_is_accepted_even_with_cr() {
        let mut f = LineFramer::new(4);
        assert_eq!(lines(&mut f, b"abcd\r\n"), vec![Ok(b"abcd".to_vec())]);
        assert_eq!(
            lines(&mut f, b"abcde\n"),
            vec![Err(DecodeError::Oversized(4))]
        );
    }

    #[test]
    fn an_oversized_line_is_reported_once_and_the_next_line_decodes() {
        let mut f = LineFramer::new(4);
        let mut out = Vec::new();
        f.feed(b"0123456", &mut out);
        f.feed(b"789abcdef", &mut out);
        f.feed(b"xyz\nok\n", &mut out);
        assert_eq!(
            out,
            vec![Err(DecodeError::Oversized(4)), Ok(b"ok".to_vec())]
        );
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn finish_reports_a_trailing_partial_line_and_resets() {
        let mut f = LineFramer::new(64);
        assert!(lines(&mut f, b"SPO2=097").is_empty());
        assert!(matches!(f.finish(), Some(DecodeError::Malformed(_))));
        assert_eq!(f.finish(), None);
        assert_eq!(lines(&mut f, b"x\n"), vec![Ok(b"x".to_vec())]);
    }

    #[test]
    fn finish_after_a_complete_line_reports_nothing() {
        let mut f = LineFramer::new(64);
        lines(&mut f, b"abc\r\n");
        assert_eq!(f.finish(), None);
    }

    proptest! {
        #[test]
        fn the_buffer_never_exceeds_its_bound(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..40), 0..20)) {
            let mut f = LineFramer::new(16);
            let mut out = Vec::new();
            for c in &chunks {
                f.feed(c, &mut out);
                prop_assert!(f.buf.len() <= 17);
            }
            for line in out.iter().flatten() {
                prop_assert!(line.len() <= 16 && !line.is_empty());
                prop_assert!(!line.contains(&b'\n'));
            }
        }

        #[test]
        fn chunking_does_not_change_the_lines(data in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..200), cut in 0usize..200) {
            let mut whole = LineFramer::new(16);
            let mut a = Vec::new();
            whole.feed(&data, &mut a);
            let mut split = LineFramer::new(16);
            let mut b = Vec::new();
            let cut = cut.min(data.len());
            split.feed(&data[..cut], &mut b);
            split.feed(&data[cut..], &mut b);
            prop_assert_eq!(a, b);
        }
    }
}
