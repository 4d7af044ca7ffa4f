use bytes::{Buf, Bytes, BytesMut};

use super::strict_eof;
use crate::outgoing::FrameBody;
use crate::{FrameError, Framer, Outgoing};

/// The length field of a [`LengthPrefixed`] frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LengthField {
    /// One byte.
    U8,
    /// Two bytes, big-endian (network order; DNS over TCP).
    U16Be,
    /// Two bytes, little-endian.
    U16Le,
    /// Four bytes, big-endian.
    U32Be,
    /// Four bytes, little-endian.
    U32Le,
    /// Eight bytes, big-endian.
    U64Be,
    /// Eight bytes, little-endian.
    U64Le,
    /// Unsigned LEB128 (protobuf's varint): 7 bits per byte, low bits first, at most 10 bytes,
    /// minimally encoded (a padded field is an error).
    Varint,
}

impl LengthField {
    /// Width in bytes of a fixed field; `None` for a varint.
    pub fn width(self) -> Option<usize> {
        match self {
            LengthField::U8 => Some(1),
            LengthField::U16Be | LengthField::U16Le => Some(2),
            LengthField::U32Be | LengthField::U32Le => Some(4),
            LengthField::U64Be | LengthField::U64Le => Some(8),
            LengthField::Varint => None,
        }
    }

    /// The largest value the field can carry.
    pub fn max_value(self) -> u64 {
        match self {
            LengthField::U8 => u8::MAX.into(),
            LengthField::U16Be | LengthField::U16Le => u16::MAX.into(),
            LengthField::U32Be | LengthField::U32Le => u32::MAX.into(),
            LengthField::U64Be | LengthField::U64Le | LengthField::Varint => u64::MAX,
        }
    }

    /// Read the field at the start of `src`: `Ok(None)` if incomplete, else (value, width).
    fn read(self, src: &[u8]) -> Result<Option<(u64, usize)>, FrameError> {
        if self == LengthField::Varint {
            let mut value: u64 = 0;
            for (i, &byte) in src.iter().enumerate().take(10) {
                let bits = u64::from(byte & 0x7f);
                if i == 9 && byte > 1 {
                    return Err(FrameError::VarintOverflow);
                }
                value |= bits << (7 * i);
                if byte & 0x80 == 0 {
                    // Canonical LEB128 only: a padded field would not re-encode to itself.
                    if i > 0 && byte == 0 {
                        return Err(FrameError::VarintNotMinimal);
                    }
                    return Ok(Some((value, i + 1)));
                }
            }
            return if src.len() >= 10 {
                Err(FrameError::VarintOverflow)
            } else {
                Ok(None)
            };
        }
        let width = self.width().unwrap_or(0);
        let Some(mut field) = src.get(..width) else {
            return Ok(None);
        };
        let value = match self {
            LengthField::U8 => field.get_u8().into(),
            LengthField::U16Be => field.get_u16().into(),
            LengthField::U16Le => field.get_u16_le().into(),
            LengthField::U32Be => field.get_u32().into(),
            LengthField::U32Le => field.get_u32_le().into(),
            LengthField::U64Be => field.get_u64(),
            _ => field.get_u64_le(),
        };
        Ok(Some((value, width)))
    }

    /// Bytes needed to write `value`.
    fn encoded_len(self, value: u64) -> usize {
        match self.width() {
            Some(width) => width,
            None => (64 - (value | 1).leading_zeros() as usize).div_ceil(7),
        }
    }

    /// Write the field for `value` into `field`; returns its width.
    fn write(self, value: u64, field: &mut [u8; 10]) -> usize {
        let mut put = |bytes: &[u8]| {
            field[..bytes.len()].copy_from_slice(bytes);
            bytes.len()
        };
        match self {
            LengthField::U8 => put(&[value as u8]),
            LengthField::U16Be => put(&(value as u16).to_be_bytes()),
            LengthField::U16Le => put(&(value as u16).to_le_bytes()),
            LengthField::U32Be => put(&(value as u32).to_be_bytes()),
            LengthField::U32Le => put(&(value as u32).to_le_bytes()),
            LengthField::U64Be => put(&value.to_be_bytes()),
            LengthField::U64Le => put(&value.to_le_bytes()),
            LengthField::Varint => {
                let mut v = value;
                let mut n = 0;
                loop {
                    let low = (v & 0x7f) as u8;
                    v >>= 7;
                    if v == 0 {
                        field[n] = low;
                        return n + 1;
                    }
                    field[n] = low | 0x80;
                    n += 1;
                }
            }
        }
    }
}

/// Frames preceded by a length field: the Python original's `StructFramer`, DNS over TCP
/// (`u16` big-endian), protobuf streams (varint), and Netty's `LengthFieldBasedFrameDecoder`.
///
/// Wire format: `header ++ length ++ body`, where `header` is the first
/// [`offset`](Self::offset) bytes of the frame (0 by default) and `length` is the field. The
/// field's value is `body.len() + adjustment`, plus the header and field bytes when
/// [`counts_header`](Self::counts_header) is on. A received frame is everything but the length
/// field (`header ++ body`, which is just the body when the offset is 0); `streamify` inserts
/// the field, so every frame round-trips.
///
/// Limits: bodies of at most [`max_length`](Self::max_length) bytes, 8 MiB by default. A larger
/// announced length is [`FrameError::TooLong`] at once, before any of the body is buffered;
/// a length smaller than the header it must count is [`FrameError::LengthUnderflow`]. Receive
/// frames are slices of the receive buffer (no copy when the offset is 0; with an offset the
/// header is moved in place).
///
/// ```
/// use bytes::BytesMut;
/// use tendril_core::{Framer, LengthPrefixed, Outgoing};
///
/// let mut framer = LengthPrefixed::u16_be(); // DNS over TCP
/// let mut out = Outgoing::new();
/// framer.streamify("abc".into(), &mut out).unwrap();
/// let wire = out.take_all();
/// assert_eq!(wire, b"\x00\x03abc"[..]);
///
/// let mut buf = BytesMut::from(&wire[..]);
/// assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "abc");
/// ```
#[derive(Debug, Clone)]
pub struct LengthPrefixed {
    field: LengthField,
    offset: usize,
    adjustment: i64,
    counts_header: bool,
    max: usize,
    /// The common configuration (no header, no adjustment, the field not counted, a fixed-width
    /// field): the field's value is the body length. Decided by the builders, so the per-frame
    /// path needs no `i128` arithmetic and no generic field read.
    plain: bool,
}

impl LengthPrefixed {
    /// The default maximum body length, 8 MiB.
    pub const DEFAULT_MAX: usize = 8 * 1024 * 1024;

    /// Frames with the given length field, no offset, no adjustment.
    pub fn new(field: LengthField) -> Self {
        LengthPrefixed {
            field,
            offset: 0,
            adjustment: 0,
            counts_header: false,
            max: Self::DEFAULT_MAX,
            plain: false,
        }
        .settled()
    }

    /// A one-byte length.
    pub fn u8() -> Self {
        Self::new(LengthField::U8)
    }

    /// A two-byte big-endian length (DNS over TCP, RFC 1035 §4.2.2).
    pub fn u16_be() -> Self {
        Self::new(LengthField::U16Be)
    }

    /// A four-byte big-endian length.
    pub fn u32_be() -> Self {
        Self::new(LengthField::U32Be)
    }

    /// A varint (LEB128) length.
    pub fn varint() -> Self {
        Self::new(LengthField::Varint)
    }

    /// The length field comes after `offset` bytes of header, which stay part of the frame.
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self.settled()
    }

    /// The field's value is the body length plus `adjustment`.
    pub fn adjustment(mut self, adjustment: i64) -> Self {
        self.adjustment = adjustment;
        self.settled()
    }

    /// The field's value also counts the header and the field itself.
    pub fn counts_header(mut self, on: bool) -> Self {
        self.counts_header = on;
        self.settled()
    }

    /// The maximum body length.
    pub fn max_length(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// The length field.
    pub fn field(&self) -> LengthField {
        self.field
    }

    /// Recompute which decode and encode path this configuration takes.
    fn settled(mut self) -> Self {
        self.plain = self.offset == 0
            && self.adjustment == 0
            && !self.counts_header
            && self.field.width().is_some();
        self
    }

    /// `frameify` for the plain configuration, once the `width`-byte field says `value`.
    #[inline]
    fn frameify_plain(
        &self,
        buf: &mut BytesMut,
        width: usize,
        value: u64,
    ) -> Result<Option<Bytes>, FrameError> {
        // `max` is a `usize`, so a value within it is a valid `usize` body length.
        if value > self.max as u64 {
            return Err(self.too_long(value));
        }
        let Some(total) = width.checked_add(value as usize) else {
            return Err(self.too_long(value));
        };
        if buf.len() < total {
            buf.reserve((total - buf.len()).min(super::RESERVE_STEP));
            return Ok(None);
        }
        let mut frame = buf.split_to(total).freeze();
        frame.advance(width);
        Ok(Some(frame))
    }

    /// `frameify` for any configuration.
    fn frameify_general(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(after_offset) = buf.get(self.offset..) else {
            return Ok(None);
        };
        let Some((value, width)) = self.field.read(after_offset)? else {
            return Ok(None);
        };
        let overhead = self.overhead(width);
        let body = i128::from(value) - overhead;
        if body < 0 {
            return Err(FrameError::LengthUnderflow {
                value,
                minimum: overhead,
            });
        }
        if body > self.max as i128 {
            return Err(self.too_long(value));
        }
        let body = body as usize;
        let header = self.offset + width;
        let Some(total) = header.checked_add(body) else {
            return Err(self.too_long(value));
        };
        if buf.len() < total {
            // The frame is announced and within the limit: make room for it once (a bounded
            // step, so an unlimited maximum cannot ask for an impossible allocation).
            buf.reserve((total - buf.len()).min(super::RESERVE_STEP));
            return Ok(None);
        }
        if self.offset == 0 {
            buf.advance(width);
            return Ok(Some(buf.split_to(body).freeze()));
        }
        let mut frame = buf.split_to(total);
        frame.copy_within(..self.offset, width);
        frame.advance(width);
        Ok(Some(frame.freeze()))
    }

    /// `streamify` for the plain configuration: the header is the field alone.
    #[inline(always)]
    fn streamify_plain<const W: usize, B: FrameBody>(
        &self,
        frame: B,
        out: &mut Outgoing,
        write: impl FnOnce(u64) -> [u8; W],
    ) -> Result<(), FrameError> {
        let body = frame.len();
        if body > self.max {
            return Err(FrameError::TooLong {
                what: "length-prefixed frame",
                max: self.max,
                announced: None,
                resynced: false,
            });
        }
        let field_max = self.field.max_value();
        if body as u64 > field_max {
            return Err(FrameError::LengthFieldOverflow {
                value: body as i128,
                field_max,
            });
        }
        frame.put_framed_into(&write(body as u64), &[], out);
        Ok(())
    }

    /// `streamify` for any configuration.
    fn streamify_general<B: FrameBody>(
        &mut self,
        frame: B,
        out: &mut Outgoing,
    ) -> Result<(), FrameError> {
        let Some(body) = frame.len().checked_sub(self.offset) else {
            return Err(FrameError::Unencodable {
                what: "length-prefixed frame",
                reason: "it is shorter than the header before the length field",
            });
        };
        if body > self.max {
            return Err(FrameError::TooLong {
                what: "length-prefixed frame",
                max: self.max,
                announced: None,
                resynced: false,
            });
        }
        let field_max = self.field.max_value();
        // A varint's own width counts when the value counts the header: find the fixed point.
        let mut width = self.field.width().unwrap_or(1);
        let value = loop {
            let value = body as i128 + self.overhead(width);
            if value < 0 || value > i128::from(field_max) {
                return Err(FrameError::LengthFieldOverflow { value, field_max });
            }
            let needed = self.field.encoded_len(value as u64);
            if needed <= width || !self.counts_header {
                break value as u64;
            }
            width = needed;
        };
        let mut field = [0u8; 10];
        let n = self.field.write(value, &mut field);
        if self.offset == 0 {
            frame.put_framed_into(&field[..n], &[], out);
        } else {
            out.put_slice(&frame[..self.offset]);
            out.put_slice(&field[..n]);
            frame.after(self.offset).put_into(out);
        }
        Ok(())
    }

    fn too_long(&self, announced: u64) -> FrameError {
        FrameError::TooLong {
            what: "length-prefixed frame",
            max: self.max,
            announced: Some(announced),
            resynced: false,
        }
    }

    /// What the field's value adds to the body length, for a field `width` bytes wide.
    fn overhead(&self, width: usize) -> i128 {
        let header = if self.counts_header {
            (self.offset + width) as i128
        } else {
            0
        };
        header + i128::from(self.adjustment)
    }
}

impl Framer for LengthPrefixed {
    type Frame = Bytes;

    #[inline]
    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if self.plain {
            // One fixed-width read, then the shared tail: no `i128`, no generic field read.
            fn read<const W: usize>(buf: &[u8]) -> Option<[u8; W]> {
                buf.first_chunk::<W>().copied()
            }
            let (width, value) = match self.field {
                LengthField::U8 => (1, read::<1>(buf).map(|[b]| b.into())),
                LengthField::U16Be => (2, read(buf).map(|b| u16::from_be_bytes(b).into())),
                LengthField::U16Le => (2, read(buf).map(|b| u16::from_le_bytes(b).into())),
                LengthField::U32Be => (4, read(buf).map(|b| u32::from_be_bytes(b).into())),
                LengthField::U32Le => (4, read(buf).map(|b| u32::from_le_bytes(b).into())),
                LengthField::U64Be => (8, read(buf).map(u64::from_be_bytes)),
                LengthField::U64Le => (8, read(buf).map(u64::from_le_bytes)),
                LengthField::Varint => return self.frameify_general(buf),
            };
            return match value {
                Some(value) => self.frameify_plain(buf, width, value),
                None => Ok(None),
            };
        }
        self.frameify_general(buf)
    }

    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        strict_eof(self, buf, "length-prefixed frame")
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

impl LengthPrefixed {
    /// `streamify` and `streamify_slice`: one encoder for owned and borrowed frames.
    #[inline]
    fn encode<B: FrameBody>(&mut self, frame: B, out: &mut Outgoing) -> Result<(), FrameError> {
        if self.plain {
            match self.field {
                LengthField::U8 => return self.streamify_plain(frame, out, |v| [v as u8]),
                LengthField::U16Be => {
                    return self.streamify_plain(frame, out, |v| (v as u16).to_be_bytes())
                }
                LengthField::U16Le => {
                    return self.streamify_plain(frame, out, |v| (v as u16).to_le_bytes())
                }
                LengthField::U32Be => {
                    return self.streamify_plain(frame, out, |v| (v as u32).to_be_bytes())
                }
                LengthField::U32Le => {
                    return self.streamify_plain(frame, out, |v| (v as u32).to_le_bytes())
                }
                LengthField::U64Be => return self.streamify_plain(frame, out, u64::to_be_bytes),
                LengthField::U64Le => return self.streamify_plain(frame, out, u64::to_le_bytes),
                LengthField::Varint => {}
            }
        }
        self.streamify_general(frame, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn fixed_fields() -> impl Strategy<Value = LengthField> {
        prop_oneof![
            Just(LengthField::U8),
            Just(LengthField::U16Be),
            Just(LengthField::U16Le),
            Just(LengthField::U32Be),
            Just(LengthField::U32Le),
            Just(LengthField::U64Be),
            Just(LengthField::U64Le),
        ]
    }

    /// The same configuration forced through the general path.
    fn general(framer: &LengthPrefixed) -> LengthPrefixed {
        let mut framer = framer.clone();
        framer.plain = false;
        framer
    }

    /// Everything `framer` does with `wire` fed in pieces of the given sizes: each frame or
    /// error and what is left buffered after it, then the end of input.
    fn decode(mut framer: LengthPrefixed, wire: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut log = Vec::new();
        let mut buf = BytesMut::new();
        let mut rest = wire;
        let mut cuts = cuts.iter().copied().cycle();
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            loop {
                match framer.frameify(&mut buf) {
                    Ok(Some(frame)) => log.push(format!("frame {frame:?}, {} left", buf.len())),
                    Ok(None) => break,
                    Err(e) => {
                        log.push(format!("error {e:?}"));
                        return log;
                    }
                }
            }
        }
        loop {
            match framer.frameify_eof(&mut buf) {
                Ok(Some(frame)) => log.push(format!("eof frame {frame:?}, {} left", buf.len())),
                Ok(None) => return log,
                Err(e) => {
                    log.push(format!("eof error {e:?}"));
                    return log;
                }
            }
        }
    }

    fn encode(mut framer: LengthPrefixed, bodies: &[Vec<u8>]) -> Vec<String> {
        let mut out = Outgoing::new();
        let mut log = Vec::new();
        for body in bodies {
            match framer.streamify(Bytes::copy_from_slice(body), &mut out) {
                Ok(()) => log.push(format!("{:?}", out.take_all())),
                Err(e) => log.push(format!("error {e:?}")),
            }
        }
        log
    }

    #[test]
    fn only_the_plain_configuration_takes_the_fast_path() {
        assert!(LengthPrefixed::u32_be().plain);
        assert!(LengthPrefixed::u8().max_length(3).plain);
        assert!(!LengthPrefixed::varint().plain);
        assert!(!LengthPrefixed::u16_be().offset(1).plain);
        assert!(!LengthPrefixed::u16_be().adjustment(-2).plain);
        assert!(!LengthPrefixed::u16_be().counts_header(true).plain);
        assert!(LengthPrefixed::u16_be().offset(1).offset(0).plain);
    }

    proptest! {
        #[test]
        fn the_fast_path_decodes_like_the_general_path(
            field in fixed_fields(),
            max in 0usize..80,
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..6),
            garbage in proptest::collection::vec(any::<u8>(), 0..12),
            garbage_at in 0usize..6,
            cuts in proptest::collection::vec(1usize..40, 0..8),
        ) {
            // Well-formed frames (some over `max`, some too long for a one-byte field) with
            // arbitrary bytes somewhere between them.
            let mut wire = Vec::new();
            for (i, body) in bodies.iter().enumerate() {
                if i == garbage_at {
                    wire.extend_from_slice(&garbage);
                }
                // A one-byte field wraps for bodies over 255: more arbitrary input.
                let mut head = [0u8; 10];
                let n = field.write(body.len() as u64, &mut head);
                wire.extend_from_slice(&head[..n]);
                wire.extend_from_slice(body);
            }
            if garbage_at >= bodies.len() {
                wire.extend_from_slice(&garbage);
            }
            let fast = LengthPrefixed::new(field).max_length(max);
            prop_assert!(fast.plain);
            prop_assert_eq!(decode(general(&fast), &wire, &cuts), decode(fast, &wire, &cuts));
        }

        #[test]
        fn the_fast_path_encodes_like_the_general_path(
            field in fixed_fields(),
            max in 0usize..400,
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6),
        ) {
            let fast = LengthPrefixed::new(field).max_length(max);
            prop_assert_eq!(encode(general(&fast), &bodies), encode(fast, &bodies));
        }
    }
}
