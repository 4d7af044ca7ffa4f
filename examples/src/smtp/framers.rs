//! The two receive framers of a session: command lines, and one message body after `DATA`.

use bytes::{Buf, Bytes, BytesMut};
use tendril_core::{Delimiter, FrameError, Framer, Line, Outgoing};

use super::{find, MAX_COMMAND};

/// The end of a message body.
pub(super) const END_OF_DATA: &[u8] = b"\r\n.\r\n";

/// The error that reports a skipped, oversized frame once the skip is over.
fn skipped(what: &'static str, max: usize) -> FrameError {
    FrameError::TooLong {
        what,
        max,
        announced: None,
        resynced: true,
    }
}

/// SMTP command lines: `Line::crlf()`, plus an in-order report of an over-long line.
///
/// The core's discard mode reports a skip when it *starts*. If the line's end is already
/// buffered, it then delivers the lines after it before the application sees the report, so
/// the `500` would come after their replies. This framer skips the line itself. It reports
/// [`Event::FrameSkipped`](tendril_core::Event::FrameSkipped) once the line's end has passed,
/// then delivers nothing more until it is switched in again, so every reply keeps its place.
pub(super) struct CommandFramer {
    line: Line,
    skipping: bool,
    paused: bool,
}

impl CommandFramer {
    /// Command lines of at most [`MAX_COMMAND`] bytes, without their CRLF.
    pub(super) fn new() -> Self {
        CommandFramer {
            line: Line::crlf().max_length(MAX_COMMAND),
            skipping: false,
            paused: false,
        }
    }
}

impl Framer for CommandFramer {
    type Frame = Bytes;

    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if self.paused {
            return Ok(None);
        }
        if !self.skipping {
            match self.line.frameify(buf) {
                Err(FrameError::TooLong { .. }) => {
                    self.line.reset();
                    self.skipping = true;
                }
                other => return other,
            }
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                buf.advance(end + 1);
                self.skipping = false;
                self.paused = true;
                Err(skipped("command line", MAX_COMMAND))
            }
            None => {
                buf.clear();
                Ok(None)
            }
        }
    }

    /// A command cut off by the end of the stream is not executed.
    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        self.frameify(buf)
    }

    fn streamify(&mut self, frame: Bytes, out: &mut Outgoing) -> Result<(), FrameError> {
        self.line.streamify(frame, out)
    }

    fn reset(&mut self) {
        self.line.reset();
        self.skipping = false;
        self.paused = false;
    }
}

/// One message body after `DATA`: `Delimiter::new(b"\r\n.\r\n")`, plus two things it cannot
/// know.
///
/// * A body that is empty (`.\r\n` right after the 354) has no CRLF before its dot, so the
///   delimiter does not match it. It is recognised here. Dot-stuffing means a body cannot
///   otherwise start with `.\r\n`.
/// * An oversized body is skipped up to its end. Only then is
///   [`Event::FrameSkipped`](tendril_core::Event::FrameSkipped) reported. The core's discard
///   mode reports a skip when it starts, and after it the framer would keep looking for a
///   `\r\n.\r\n` in the commands that follow.
///
/// The frame is the message data with the CRLF that ends its last line, still dot-stuffed
/// (empty for an empty body). One frame (or one report), then nothing until switched in again.
pub(super) struct BodyFramer {
    body: Delimiter,
    max: usize,
    skipping: bool,
    done: bool,
}

impl BodyFramer {
    /// Bodies of at most `max` bytes as sent (dot-stuffed, without the end-of-data line).
    pub(super) fn new(max: usize) -> Self {
        BodyFramer {
            body: Delimiter::new(END_OF_DATA)
                .expect("the delimiter is not empty")
                .max_length(max)
                .keep_delimiter(true),
            max,
            skipping: false,
            done: false,
        }
    }
}

impl Framer for BodyFramer {
    type Frame = Bytes;

    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if self.done {
            return Ok(None);
        }
        if !self.skipping {
            if buf.starts_with(b".\r\n") {
                buf.advance(3);
                self.done = true;
                return Ok(Some(Bytes::new()));
            }
            match self.body.frameify(buf) {
                Ok(Some(frame)) => {
                    self.done = true;
                    // Keep the CRLF of the last line, drop ".\r\n".
                    return Ok(Some(frame.slice(..frame.len() - 3)));
                }
                Err(FrameError::TooLong { .. }) => {
                    self.body.reset();
                    self.skipping = true;
                }
                other => return other,
            }
        }
        match find(buf, END_OF_DATA) {
            Some(end) => {
                buf.advance(end + END_OF_DATA.len());
                self.skipping = false;
                self.done = true;
                Err(skipped("message", self.max))
            }
            None => {
                // Keep what could be the start of the end-of-data line.
                buf.advance(buf.len().saturating_sub(END_OF_DATA.len() - 1));
                Ok(None)
            }
        }
    }

    /// A message cut off by the end of the stream is an error, never a message.
    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.frameify(buf)? {
            return Ok(Some(frame));
        }
        if !self.done && (self.skipping || !buf.is_empty()) {
            return Err(FrameError::Truncated {
                what: "message",
                buffered: buf.len(),
            });
        }
        Ok(None)
    }

    fn streamify(&mut self, frame: Bytes, out: &mut Outgoing) -> Result<(), FrameError> {
        self.body.streamify(frame, out)
    }

    fn reset(&mut self) {
        self.body.reset();
        self.skipping = false;
        self.done = false;
    }
}
