use bytes::{Buf, Bytes, BytesMut};

use super::strict_eof;
use crate::outgoing::FrameBody;
use crate::{FrameError, Framer, Outgoing};

/// D. J. Bernstein's netstrings: `len:data,`.
///
/// Wire format: the data length in decimal ASCII (no sign, no leading zeros except `0` itself),
/// `:`, the data, `,`. `12:hello world!,` carries `hello world!`.
///
/// Limits: data of at most [`max_length`](Self::max_length) bytes, 8 MiB by default. A length
/// over it is [`FrameError::TooLong`] as soon as its digits exceed the limit, so a 20-digit
/// length is refused after a handful of bytes. A non-digit, a leading zero, an empty length or a
/// missing `,` is an error naming the byte. Received frames are slices of the receive buffer.
///
/// ```
/// use bytes::BytesMut;
/// use tendril_core::{Framer, Netstring};
///
/// let mut framer = Netstring::new();
/// let mut buf = BytesMut::from(&b"5:hello,0:,"[..]);
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "hello");
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "");
///
/// let mut bad = BytesMut::from(&b"05:hello,"[..]);
/// assert!(framer.frameify(&mut bad).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Netstring {
    max: usize,
}

impl Netstring {
    /// The default maximum data length, 8 MiB.
    pub const DEFAULT_MAX: usize = 8 * 1024 * 1024;

    /// A netstring framer with the default limit.
    pub fn new() -> Self {
        Netstring {
            max: Self::DEFAULT_MAX,
        }
    }

    /// The maximum data length.
    pub fn max_length(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    fn too_long(&self, announced: Option<u64>) -> FrameError {
        FrameError::TooLong {
            what: "netstring",
            max: self.max,
            announced,
            resynced: false,
        }
    }
}

impl Default for Netstring {
    fn default() -> Self {
        Self::new()
    }
}

fn bad_length(reason: &'static str, byte: Option<u8>) -> FrameError {
    FrameError::NetstringLength { reason, byte }
}

impl Framer for Netstring {
    type Frame = Bytes;

    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let mut len: u64 = 0;
        let mut colon = None;
        for (i, &byte) in buf.iter().enumerate() {
            match byte {
                b':' if i == 0 => return Err(bad_length("is empty", None)),
                b':' => {
                    colon = Some(i);
                    break;
                }
                b'0'..=b'9' if i == 1 && buf[0] == b'0' => {
                    return Err(bad_length("has a leading zero", Some(byte)))
                }
                b'0'..=b'9' => {
                    len = len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(u64::from(byte - b'0')))
                        .filter(|&l| l <= self.max as u64)
                        .ok_or_else(|| self.too_long(None))?;
                }
                _ => return Err(bad_length("is not a decimal number", Some(byte))),
            }
        }
        let Some(colon) = colon else {
            return Ok(None);
        };
        let len = len as usize;
        let Some(total) = (colon + 2).checked_add(len) else {
            return Err(self.too_long(None));
        };
        if buf.len() < total {
            buf.reserve((total - buf.len()).min(super::RESERVE_STEP));
            return Ok(None);
        }
        let comma = buf[total - 1];
        if comma != b',' {
            return Err(FrameError::NetstringComma { found: comma });
        }
        buf.advance(colon + 1);
        let frame = buf.split_to(len).freeze();
        buf.advance(1);
        Ok(Some(frame))
    }

    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        strict_eof(self, buf, "netstring")
    }

    #[inline]
    fn streamify(&mut self, frame: Bytes, out: &mut Outgoing) -> Result<(), FrameError> {
        self.encode(frame, out)
    }

    #[inline]
    fn streamify_slice(&mut self, frame: &[u8], out: &mut Outgoing) -> Result<(), FrameError> {
        self.encode(frame, out)
    }
}

impl Netstring {
    /// `streamify` and `streamify_slice`: one encoder for owned and borrowed frames.
    #[inline]
    fn encode<B: FrameBody>(&mut self, frame: B, out: &mut Outgoing) -> Result<(), FrameError> {
        if frame.len() > self.max {
            return Err(self.too_long(None));
        }
        // The length's digits and the colon, written backwards.
        let mut digits = [b':'; 21];
        let mut at = digits.len() - 1;
        let mut n = frame.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        frame.put_framed_into(&digits[at..], b",", out);
        Ok(())
    }
}
