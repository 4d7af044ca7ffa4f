//! Errors of the framer layer.

use alloc::boxed::Box;
use core::fmt;

/// What went wrong while turning bytes into frames or frames into bytes.
///
/// Every message names the format, what was wrong and, where it helps, what to change. A framer
/// error on the receive side means the peer sent bytes that do not fit the wire format (or a
/// frame over the configured limit); on the send side it means the application asked for a frame
/// the format cannot carry.
///
/// ```
/// use bytes::BytesMut;
/// use tendril_core::{Framer, Line};
///
/// let mut line = Line::crlf().max_length(4);
/// let mut buf = BytesMut::from(&b"much too long\r\n"[..]);
/// let err = line.frameify(&mut buf).unwrap_err();
/// assert_eq!(err.to_string(), "line longer than 4 bytes");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame (received or to be sent) is longer than the framer's maximum.
    TooLong {
        /// The kind of frame, e.g. `"line"`.
        what: &'static str,
        /// The configured maximum frame length in bytes.
        max: usize,
        /// The length announced by a length field, when the format has one.
        announced: Option<u64>,
        /// `true` when the framer skipped to the next frame boundary and can go on decoding.
        resynced: bool,
    },
    /// The input ended (EOF, end of a datagram) in the middle of a frame.
    Truncated {
        /// The kind of frame, e.g. `"netstring"`.
        what: &'static str,
        /// How many bytes of the unfinished frame were buffered.
        buffered: usize,
    },
    /// A COBS code byte announces more bytes than there are before the delimiter.
    CobsOverrun {
        /// The offending code byte.
        code: u8,
        /// The bytes that were left before the delimiter.
        left: usize,
    },
    /// A netstring length is not a canonical decimal number.
    NetstringLength {
        /// What is wrong with it.
        reason: &'static str,
        /// The offending byte, if one byte is to blame.
        byte: Option<u8>,
    },
    /// A netstring's data is not followed by `,`.
    NetstringComma {
        /// The byte found where `,` belongs.
        found: u8,
    },
    /// A length field's value is smaller than the header bytes and adjustment it must include.
    LengthUnderflow {
        /// The value read from the length field.
        value: u64,
        /// The smallest value the configuration allows.
        minimum: i128,
    },
    /// A varint length field is longer than 10 bytes or exceeds `u64::MAX`.
    VarintOverflow,
    /// A varint length field is padded (ends in a `0x00` continuation), which makes the length
    /// ambiguous to re-encode.
    VarintNotMinimal,
    /// A frame cannot be written in this format (e.g. a line that contains `\n`, a frame too
    /// long for a one-byte length field).
    Unencodable {
        /// The kind of frame, e.g. `"line"`.
        what: &'static str,
        /// Why, as a sentence fragment.
        reason: &'static str,
    },
    /// A frame's length does not fit the length field on the send side.
    LengthFieldOverflow {
        /// The value that had to be written.
        value: i128,
        /// The largest value the field can carry.
        field_max: u64,
    },
    /// An error from an application-supplied conversion (see [`Framer::map`](crate::Framer::map)).
    Custom(Box<dyn core::error::Error + Send + Sync>),
}

impl FrameError {
    /// `true` if the framer already skipped the bad frame and the next `frameify` call continues
    /// with the frame after it (the discard-oversized mode of `Line`, `Delimiter`, `Cobs` and
    /// `Stuffing`). All other errors leave the stream unusable: close the connection.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, FrameError::TooLong { resynced: true, .. })
    }

    /// Wrap an application error (e.g. from a typed decoder) as a `FrameError`.
    pub fn custom<E>(error: E) -> Self
    where
        E: Into<Box<dyn core::error::Error + Send + Sync>>,
    {
        FrameError::Custom(error.into())
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong {
                what,
                max,
                announced,
                resynced,
            } => {
                write!(f, "{what} longer than {max} bytes")?;
                if let Some(len) = announced {
                    write!(f, " (length field says {len})")?;
                }
                if *resynced {
                    f.write_str("; skipped to the next frame")?;
                }
                Ok(())
            }
            FrameError::Truncated { what, buffered } => write!(
                f,
                "input ended inside a {what} ({buffered} bytes of it were buffered)"
            ),
            FrameError::CobsOverrun { code, left } => write!(
                f,
                "COBS code {code:#04x} runs past the delimiter ({left} bytes were left)"
            ),
            FrameError::NetstringLength { reason, byte } => {
                write!(f, "netstring length {reason}")?;
                if let Some(b) = byte {
                    write!(f, " (byte {b:#04x})")?;
                }
                Ok(())
            }
            FrameError::NetstringComma { found } => {
                write!(f, "netstring data not followed by ',' (found {found:#04x})")
            }
            FrameError::LengthUnderflow { value, minimum } => write!(
                f,
                "length field value {value} is smaller than {minimum}, the header and adjustment it must include"
            ),
            FrameError::VarintOverflow => {
                f.write_str("varint length field longer than 10 bytes or above 2^64-1")
            }
            FrameError::VarintNotMinimal => {
                f.write_str("varint length field is padded with a trailing zero byte")
            }
            FrameError::Unencodable { what, reason } => write!(f, "cannot send this {what}: {reason}"),
            FrameError::LengthFieldOverflow { value, field_max } => write!(
                f,
                "length {value} does not fit the length field (at most {field_max}); use a wider field"
            ),
            FrameError::Custom(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            FrameError::Custom(e) => Some(&**e),
            _ => None,
        }
    }
}

/// An invalid framer configuration (a programming error, never peer input).
///
/// ```
/// use tendril_core::Stuffing;
///
/// let err = Stuffing::new(b"zz", b'a', b'a', b'n').unwrap_err();
/// assert_eq!(err.to_string(), "invalid framer configuration: begin and end must be distinct");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: &'static str,
}

impl ConfigError {
    pub(crate) const fn new(message: &'static str) -> Self {
        ConfigError { message }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid framer configuration: {}", self.message)
    }
}

impl core::error::Error for ConfigError {}
