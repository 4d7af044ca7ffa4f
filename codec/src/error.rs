//! The error of [`FramerCodec`](crate::FramerCodec).

use std::{fmt, io};

use tendril_core::FrameError;

/// What went wrong in a [`FramerCodec`](crate::FramerCodec): the framer refused the bytes or the
/// frame, or the transport under `Framed` failed.
///
/// `tokio_util` needs the codec's error to be `From<io::Error>`, since `Framed` reports the
/// socket's errors through it; a Tendril framer's own errors are [`FrameError`]s. Both messages
/// are passed through unchanged (`Display` is the inner error's, `source` is the inner error's
/// source).
///
/// ```
/// use bytes::BytesMut;
/// use tendril_codec::{CodecError, FramerCodec};
/// use tendril_core::{FrameError, Netstring};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = FramerCodec::new(Netstring::new());
/// let err = codec.decode(&mut BytesMut::from("05:hello,")).unwrap_err();
/// assert!(matches!(err, CodecError::Frame(FrameError::NetstringLength { .. })));
/// assert_eq!(err.to_string(), "netstring length has a leading zero (byte 0x35)");
///
/// // Where a pipeline wants `io::Error`s: framing errors become `InvalidData`.
/// let io: std::io::Error = err.into();
/// assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum CodecError {
    /// The framer refused the received bytes (they break the format or a limit) or a frame to
    /// send (the format cannot carry it).
    Frame(FrameError),
    /// Reading or writing the transport failed (passed in by `Framed`).
    Io(io::Error),
}

impl CodecError {
    /// `true` for a [`FrameError`] that the framer already recovered from
    /// ([`FrameError::is_recoverable`]: an oversized frame skipped in discard mode), so decoding
    /// can go on. Only returned by a codec in
    /// [`report_skipped`](crate::FramerCodec::report_skipped) mode.
    ///
    /// ```
    /// use tendril_codec::CodecError;
    /// use tendril_core::FrameError;
    ///
    /// let io = CodecError::from(std::io::Error::other("reset"));
    /// assert!(!io.is_recoverable());
    /// let bad = CodecError::from(FrameError::VarintOverflow);
    /// assert!(!bad.is_recoverable());
    /// ```
    pub fn is_recoverable(&self) -> bool {
        matches!(self, CodecError::Frame(e) if e.is_recoverable())
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Frame(e) => fmt::Display::fmt(e, f),
            CodecError::Io(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Transparent: the inner error's message is this one's, so its cause comes next.
        match self {
            CodecError::Frame(e) => e.source(),
            CodecError::Io(e) => e.source(),
        }
    }
}

impl From<io::Error> for CodecError {
    fn from(e: io::Error) -> Self {
        CodecError::Io(e)
    }
}

impl From<FrameError> for CodecError {
    fn from(e: FrameError) -> Self {
        CodecError::Frame(e)
    }
}

impl From<CodecError> for io::Error {
    /// The I/O error itself, or a framing error as [`io::ErrorKind::InvalidData`].
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Io(e) => e,
            CodecError::Frame(e) => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_custom_frame_error_keeps_its_cause_in_the_chain() {
        let err = CodecError::from(FrameError::custom(io::Error::other("bad record")));
        assert_eq!(err.to_string(), "bad record");
        let cause = err.source().expect("the custom error is the source");
        assert_eq!(cause.to_string(), "bad record");
    }

    #[test]
    fn an_io_error_converts_back_to_itself() {
        let err = CodecError::from(io::Error::new(io::ErrorKind::BrokenPipe, "gone"));
        assert_eq!(err.to_string(), "gone");
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn only_a_resynced_too_long_is_recoverable() {
        let skipped = FrameError::TooLong {
            what: "line",
            max: 4,
            announced: None,
            resynced: true,
        };
        assert!(CodecError::from(skipped).is_recoverable());
        let fatal = FrameError::TooLong {
            what: "line",
            max: 4,
            announced: None,
            resynced: false,
        };
        assert!(!CodecError::from(fatal).is_recoverable());
    }
}
