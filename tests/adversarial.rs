//! Hostile and broken input: memory stays bounded, errors come early and say what is wrong,
//! and the discard-oversized mode skips exactly the bad frame.

mod common;

use bytes::{Bytes, BytesMut};
use tendril_core::{
    BoxFramer, Chunk, Cobs, Delimiter, FrameError, Framer, LengthField, LengthPrefixed, Line,
    Netstring, Outgoing, Stuffing,
};

use common::{bytewise, encode, feed, hex, pull, pull_eof};

/// The size of one read in the streaming tests.
const READ: usize = 4096;

/// Feed `wire` in `read`-sized pieces; after each piece pull frames until `Ok(None)`, keeping
/// going after recoverable errors. Returns the frames (`None` for a skipped one) and the
/// largest buffer length seen after a piece was processed. Panics on an unrecoverable error.
fn stream<F: Framer<Frame = Bytes>>(
    framer: &mut F,
    wire: &[u8],
    read: usize,
) -> (Vec<Option<Bytes>>, usize) {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut high = 0;
    let mut drain = |framer: &mut F, buf: &mut BytesMut, eof: bool| loop {
        let result = if eof {
            framer.frameify_eof(buf)
        } else {
            framer.frameify(buf)
        };
        match result {
            Ok(Some(frame)) => events.push(Some(frame)),
            Ok(None) => break,
            Err(e) if e.is_recoverable() => events.push(None),
            Err(e) => panic!("unrecoverable error: {e}"),
        }
    };
    for piece in wire.chunks(read) {
        buf.extend_from_slice(piece);
        drain(framer, &mut buf, false);
        high = high.max(buf.len());
    }
    drain(framer, &mut buf, true);
    assert!(buf.is_empty(), "left over: {}", hex(&buf));
    (events, high)
}

/// Frames as text for comparisons, `<skipped>` for a recoverable error.
fn show(events: &[Option<Bytes>]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Some(frame) => String::from_utf8_lossy(frame).into_owned(),
            None => "<skipped>".into(),
        })
        .collect()
}

/// Feed `junk` in `read`-sized pieces and return the error, checking that it comes only once
/// the buffer is longer than `allowed` and that the buffer never grows past `allowed + read`.
fn fails_once_past<F: Framer>(
    framer: &mut F,
    junk: &[u8],
    read: usize,
    allowed: usize,
) -> FrameError {
    let mut buf = BytesMut::new();
    for piece in junk.chunks(read) {
        buf.extend_from_slice(piece);
        assert!(buf.len() <= allowed + read, "{} bytes buffered", buf.len());
        match framer.frameify(&mut buf) {
            Ok(None) => assert!(
                buf.len() <= allowed,
                "{} bytes buffered and no error",
                buf.len()
            ),
            Ok(Some(_)) => panic!("a frame out of junk"),
            Err(e) => {
                assert!(
                    buf.len() > allowed,
                    "error with only {} bytes buffered: {e}",
                    buf.len()
                );
                return e;
            }
        }
    }
    panic!("{} bytes of junk and no error", junk.len());
}

// ---------------------------------------------------------------------------------------------
// Bounded memory, early errors.

#[test]
fn a_never_ending_line_fails_once_the_buffer_passes_the_limit() {
    let junk = vec![b'x'; 1 << 20];
    // CRLF mode may hold one '\r' beyond the limit before deciding.
    let err = fails_once_past(&mut Line::crlf(), &junk, READ, Line::DEFAULT_MAX + 1);
    assert_eq!(err.to_string(), "line longer than 8192 bytes");
    assert!(matches!(
        err,
        FrameError::TooLong {
            what: "line",
            max: 8192,
            announced: None,
            resynced: false
        }
    ));
    assert!(!err.is_recoverable());

    let err = fails_once_past(&mut Line::lf(), &junk, READ, Line::DEFAULT_MAX);
    assert_eq!(err.to_string(), "line longer than 8192 bytes");
}

#[test]
fn a_line_fed_byte_by_byte_fails_at_the_first_byte_that_cannot_fit() {
    let junk = vec![b'x'; 100];
    for (mut framer, allowed) in [
        (Line::crlf().max_length(10), 11),
        (Line::lf().max_length(10), 10),
    ] {
        fails_once_past(&mut framer, &junk, 1, allowed);
    }
    // A line of exactly the maximum, with its terminator, is fine.
    let (frames, _) = feed(
        &mut Line::crlf().max_length(10),
        bytewise(b"0123456789\r\n"),
    )
    .unwrap();
    assert_eq!(frames, ["0123456789"]);
    let (frames, _) = feed(&mut Line::lf().max_length(10), bytewise(b"0123456789\n")).unwrap();
    assert_eq!(frames, ["0123456789"]);
}

#[test]
fn a_never_ending_delimited_frame_fails_with_bounded_memory() {
    let junk = b"\r\n.\r".repeat(1 << 18);
    let mut framer = Delimiter::new(b"\r\n.\r\n").unwrap();
    // Up to the maximum plus a partial delimiter (4 bytes) may wait for the rest.
    let err = fails_once_past(&mut framer, &junk, READ, Delimiter::DEFAULT_MAX + 4);
    assert_eq!(err.to_string(), "delimited frame longer than 65536 bytes");
}

#[test]
fn a_four_gib_length_prefix_is_refused_before_any_body_is_buffered() {
    let mut framer = LengthPrefixed::u32_be();
    let mut buf = BytesMut::new();
    for (i, &byte) in [0xff_u8; 4].iter().enumerate() {
        buf.extend_from_slice(&[byte]);
        let result = framer.frameify(&mut buf);
        if i < 3 {
            assert!(matches!(result, Ok(None)), "{result:?}");
            continue;
        }
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooLong {
                    what: "length-prefixed frame",
                    max: LengthPrefixed::DEFAULT_MAX,
                    announced: Some(4_294_967_295),
                    resynced: false,
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "length-prefixed frame longer than 8388608 bytes (length field says 4294967295)"
        );
    }
    // Nothing was reserved for the announced body.
    assert!(buf.capacity() < 1 << 20, "capacity {}", buf.capacity());
}

#[test]
fn a_length_just_over_the_maximum_is_refused_and_one_at_it_is_awaited() {
    let mut framer = LengthPrefixed::u16_be().max_length(300);
    let mut buf = BytesMut::from(&[0x01, 0x2d][..]); // 301
    let err = framer.frameify(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        FrameError::TooLong {
            max: 300,
            announced: Some(301),
            ..
        }
    ));

    let mut buf = BytesMut::from(&[0x01, 0x2c, b'a'][..]); // 300
    assert!(framer.frameify(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&[b'a'; 299]);
    assert_eq!(framer.frameify(&mut buf).unwrap().unwrap().len(), 300);
    assert!(buf.is_empty());
}

#[test]
fn cobs_input_without_a_delimiter_fails_with_bounded_memory() {
    let junk: Vec<u8> = (0..1 << 20).map(|i| (i % 255 + 1) as u8).collect();
    // The longest encoding of a 64 KiB frame: one code byte per 254 data bytes, plus one.
    let allowed = 65536 + 65536 / 254 + 1;
    let err = fails_once_past(&mut Cobs::new(), &junk, READ, allowed);
    assert_eq!(err.to_string(), "COBS frame longer than 65536 bytes");
    let allowed = 65536 + 65536 / 223 + 1;
    let err = fails_once_past(&mut Cobs::zpe(), &junk, READ, allowed);
    assert_eq!(err.to_string(), "COBS frame longer than 65536 bytes");

    // Byte by byte with a small maximum: 10 data bytes need 11 encoded bytes.
    fails_once_past(&mut Cobs::new().max_length(10), &junk[..100], 1, 11);
    let wire = encode(&mut Cobs::new(), Bytes::from_static(b"0123456789")).unwrap();
    let (frames, _) = feed(&mut Cobs::new().max_length(10), bytewise(&wire)).unwrap();
    assert_eq!(frames, ["0123456789"]);
}

#[test]
fn stuffing_junk_without_a_start_marker_never_piles_up() {
    // Junk full of near misses: end markers, four of the five bytes of the start marker. (It
    // does not end in 0xFF: with the default markers a 0xFF right before a start marker makes
    // the start marker one byte early, a property of the format.)
    let pattern = b"junk\xff\xff\xff\xff\xfe\xff\xff\xff\xff\x00\xff-";
    let junk = pattern.repeat((1 << 20) / pattern.len());
    let mut framer = Stuffing::default();
    let mut buf = BytesMut::new();
    for piece in junk.chunks(READ) {
        buf.extend_from_slice(piece);
        assert!(framer.frameify(&mut buf).unwrap().is_none());
        // At most a start marker minus its last byte is kept.
        assert!(buf.len() <= 4, "{} bytes of junk kept", buf.len());
    }
    assert!(framer.frameify_eof(&mut buf).unwrap().is_none());
    assert!(buf.is_empty());

    // A frame after the junk still comes through.
    let wire = encode(&mut Stuffing::default(), Bytes::from_static(b"after")).unwrap();
    let mut framer = Stuffing::default();
    let (events, high) = stream(&mut framer, &[&junk[..], &wire[..]].concat(), READ);
    assert_eq!(show(&events), ["after"]);
    assert!(high <= 4 + wire.len());
}

#[test]
fn a_never_ending_stuffed_frame_fails_with_bounded_memory() {
    let mut junk = b"\xff\xff\xff\xff\xff".to_vec();
    junk.extend(std::iter::repeat_n(0x11, 1 << 20));
    // 64 KiB, plus a nop for every 4 bytes, plus 4 bytes of a possible end marker.
    let allowed = 65536 + 65536 / 4 + 4;
    let err = fails_once_past(&mut Stuffing::default(), &junk, READ, allowed);
    assert_eq!(err.to_string(), "stuffed frame longer than 65536 bytes");
}

#[test]
fn a_netstring_with_a_twenty_digit_length_is_refused_after_a_few_bytes() {
    let wire = b"12345678901234567890:";
    let mut framer = Netstring::new();
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let err = loop {
        buf.extend_from_slice(&wire[fed..fed + 1]);
        fed += 1;
        match framer.frameify(&mut buf) {
            Ok(None) => assert!(fed < 10, "{fed} digits accepted"),
            Ok(Some(f)) => panic!("frame {f:?}"),
            Err(e) => break e,
        }
    };
    // 8 MiB has 7 digits: the 8th makes the length too large.
    assert_eq!(fed, 8);
    assert_eq!(err.to_string(), "netstring longer than 8388608 bytes");
    assert!(matches!(
        err,
        FrameError::TooLong {
            what: "netstring",
            ..
        }
    ));
    // Whole, too.
    let mut buf = BytesMut::from(&b"99999999999999999999:"[..]);
    assert!(Netstring::new().frameify(&mut buf).is_err());
}

#[test]
fn a_varint_length_longer_than_ten_bytes_or_above_u64_max_is_an_overflow() {
    let overflow = |wire: &[u8]| {
        let mut buf = BytesMut::from(wire);
        LengthPrefixed::varint().frameify(&mut buf)
    };
    // Ten continuation bytes: the error comes at the tenth, not later.
    let mut framer = LengthPrefixed::varint();
    let mut buf = BytesMut::new();
    for i in 0..10 {
        buf.extend_from_slice(&[0x80]);
        let result = framer.frameify(&mut buf);
        if i < 9 {
            assert!(matches!(result, Ok(None)), "byte {i}: {result:?}");
        } else {
            let err = result.unwrap_err();
            assert!(matches!(err, FrameError::VarintOverflow));
            assert_eq!(
                err.to_string(),
                "varint length field longer than 10 bytes or above 2^64-1"
            );
        }
    }
    // 2^64 and above.
    let mut above = vec![0xff; 9];
    above.push(0x02);
    assert!(matches!(overflow(&above), Err(FrameError::VarintOverflow)));
    // u64::MAX itself is a valid varint, and far too long.
    let mut max = vec![0xff; 9];
    max.push(0x01);
    assert!(matches!(
        overflow(&max),
        Err(FrameError::TooLong {
            announced: Some(u64::MAX),
            ..
        })
    ));
    // A padded (non-minimal) encoding is refused: it would not re-encode to itself.
    assert!(matches!(
        overflow(&[0x82, 0x00, b'h', b'i']),
        Err(FrameError::VarintNotMinimal)
    ));
}

#[test]
fn a_length_smaller_than_the_header_it_counts_is_an_underflow() {
    let underflow = |mut framer: LengthPrefixed, wire: &[u8]| {
        let mut buf = BytesMut::from(wire);
        framer.frameify(&mut buf)
    };
    let err = underflow(LengthPrefixed::u16_be().counts_header(true), &[0x00, 0x01]).unwrap_err();
    assert!(matches!(
        err,
        FrameError::LengthUnderflow {
            value: 1,
            minimum: 2
        }
    ));
    assert_eq!(
        err.to_string(),
        "length field value 1 is smaller than 2, the header and adjustment it must include"
    );
    let with_offset = LengthPrefixed::u16_be().offset(2).counts_header(true);
    let err = underflow(with_offset.clone(), b"hd\x00\x03").unwrap_err();
    assert!(matches!(
        err,
        FrameError::LengthUnderflow {
            value: 3,
            minimum: 4
        }
    ));
    let adjusted = LengthPrefixed::u8().adjustment(3);
    let err = underflow(adjusted.clone(), &[0x02]).unwrap_err();
    assert!(matches!(
        err,
        FrameError::LengthUnderflow {
            value: 2,
            minimum: 3
        }
    ));
    // Exactly the minimum is an empty body.
    assert_eq!(
        underflow(with_offset, b"hd\x00\x04").unwrap().unwrap(),
        "hd"
    );
    assert_eq!(underflow(adjusted, &[0x03]).unwrap().unwrap(), "");
    // A varint that counts itself.
    let err = underflow(LengthPrefixed::varint().counts_header(true), &[0x00]).unwrap_err();
    assert!(matches!(
        err,
        FrameError::LengthUnderflow {
            value: 0,
            minimum: 1
        }
    ));
}

// ---------------------------------------------------------------------------------------------
// Discard-oversized mode: good, skipped, good.

/// A good frame, an oversized one of `big` bytes, another good frame, on the wire; the oversized
/// one written by `wide`, a framer that allows it.
fn good_big_good<F: Framer<Frame = Bytes>>(narrow: &mut F, wide: &mut F, big: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    wire.extend_from_slice(&encode(narrow, Bytes::from_static(b"first")).unwrap());
    let oversized = Bytes::from(vec![b'x'; big]);
    assert!(encode(narrow, oversized.clone()).is_err());
    wire.extend_from_slice(&encode(wide, oversized).unwrap());
    wire.extend_from_slice(&encode(narrow, Bytes::from_static(b"second")).unwrap());
    wire
}

/// The oversized frame is skipped with one recoverable error, whether it arrives whole, in
/// 4 KiB reads or byte by byte, and the buffer stays within `bound` (plus one read).
fn skips_the_oversized_frame<F: Framer<Frame = Bytes>>(
    make: impl Fn() -> F,
    wire: &[u8],
    bound: usize,
    message: &str,
) {
    for read in [wire.len(), READ, 1] {
        let (events, high) = stream(&mut make(), wire, read);
        assert_eq!(
            show(&events),
            ["first", "<skipped>", "second"],
            "reads of {read}"
        );
        if read < wire.len() {
            assert!(
                high <= bound + read,
                "{high} bytes buffered in reads of {read}"
            );
        }
    }
    let mut buf = BytesMut::from(wire);
    let mut framer = make();
    assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "first");
    let err = framer.frameify(&mut buf).unwrap_err();
    assert!(err.is_recoverable());
    assert_eq!(err.to_string(), message);
    assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "second");
}

const BIG: usize = 1 << 18;

#[test]
fn an_oversized_line_between_two_good_ones_is_skipped() {
    let make = || Line::crlf().max_length(100).discard_oversized(true);
    let wide = &mut Line::crlf().max_length(BIG);
    let wire = good_big_good(&mut make(), wide, BIG);
    skips_the_oversized_frame(
        make,
        &wire,
        102,
        "line longer than 100 bytes; skipped to the next frame",
    );
}

#[test]
fn an_oversized_delimited_frame_between_two_good_ones_is_skipped() {
    let make = || {
        Delimiter::new(b"\r\n.\r\n")
            .unwrap()
            .max_length(100)
            .discard_oversized(true)
    };
    let wide = &mut Delimiter::new(b"\r\n.\r\n").unwrap().max_length(BIG);
    let wire = good_big_good(&mut make(), wide, BIG);
    skips_the_oversized_frame(
        make,
        &wire,
        105,
        "delimited frame longer than 100 bytes; skipped to the next frame",
    );
}

#[test]
fn an_oversized_cobs_frame_between_two_good_ones_is_skipped() {
    for zpe in [false, true] {
        let base = || if zpe { Cobs::zpe() } else { Cobs::new() };
        let make = || base().max_length(100).discard_oversized(true);
        let wire = good_big_good(&mut make(), &mut base().max_length(BIG), BIG);
        skips_the_oversized_frame(
            make,
            &wire,
            102,
            "COBS frame longer than 100 bytes; skipped to the next frame",
        );
    }
}

#[test]
fn an_oversized_stuffed_frame_between_two_good_ones_is_skipped() {
    for (prefix, begin, end, nop) in [
        (&b"\xff\xff\xff\xff"[..], 0xff, 0xfe, 0x00),
        (b"zzz", b'z', b'w', b'a'),
    ] {
        let base = || Stuffing::new(prefix, begin, end, nop).unwrap();
        let make = || base().max_length(100).discard_oversized(true);
        let wire = good_big_good(&mut make(), &mut base().max_length(BIG), BIG);
        skips_the_oversized_frame(
            make,
            &wire,
            100 + 100 + prefix.len(),
            "stuffed frame longer than 100 bytes; skipped to the next frame",
        );
    }
}

#[test]
fn an_oversized_frame_cut_off_by_the_end_of_input_is_dropped_quietly_in_discard_mode() {
    // The partial frame being discarded is not a last frame, nor a truncated one.
    let mut wire = b"ok\n".to_vec();
    wire.extend(vec![b'x'; 1000]);
    let (events, _) = stream(
        &mut Line::lf().max_length(10).discard_oversized(true),
        &wire,
        64,
    );
    assert_eq!(show(&events), ["ok", "<skipped>"]);
    let (events, _) = stream(
        &mut Cobs::new().max_length(10).discard_oversized(true),
        &[&[0x03, b'o', b'k', 0x00][..], &[0x11; 1000][..]].concat(),
        64,
    );
    assert_eq!(show(&events), ["ok", "<skipped>"]);
}

// ---------------------------------------------------------------------------------------------
// Error messages and the end of input.

#[test]
fn malformed_netstrings_say_what_is_wrong() {
    let cases: [(&[u8], &str); 5] = [
        (
            b"05:hello,",
            "netstring length has a leading zero (byte 0x35)",
        ),
        (b"00:,", "netstring length has a leading zero (byte 0x30)"),
        (
            b"-1:,",
            "netstring length is not a decimal number (byte 0x2d)",
        ),
        (b":,", "netstring length is empty"),
        (
            b"5:hello;",
            "netstring data not followed by ',' (found 0x3b)",
        ),
    ];
    for (wire, message) in cases {
        let mut buf = BytesMut::from(wire);
        let err = Netstring::new().frameify(&mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            message,
            "{}",
            String::from_utf8_lossy(wire)
        );
        assert!(!err.is_recoverable());
    }
}

#[test]
fn a_cobs_code_running_past_the_delimiter_is_an_error_not_a_short_frame() {
    let mut buf = BytesMut::from(&[0x05, b'a', b'b', 0x00][..]);
    let err = Cobs::new().frameify(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        FrameError::CobsOverrun {
            code: 0x05,
            left: 2
        }
    ));
    assert_eq!(
        err.to_string(),
        "COBS code 0x05 runs past the delimiter (2 bytes were left)"
    );
    let mut buf = BytesMut::from(&[0xe5, b'a', 0x00][..]);
    let err = Cobs::zpe().frameify(&mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "COBS code 0xe5 runs past the delimiter (1 bytes were left)"
    );
}

#[test]
fn the_end_of_input_inside_a_frame_is_truncated() {
    let cases: Vec<(BoxFramer<Bytes>, &[u8], &str)> = vec![
        (
            LengthPrefixed::u16_be().boxed(),
            b"\x00\x05ab",
            "length-prefixed frame",
        ),
        (
            LengthPrefixed::new(LengthField::U32Le).boxed(),
            b"\x05\x00",
            "length-prefixed frame",
        ),
        (
            LengthPrefixed::varint().boxed(),
            b"\x80",
            "length-prefixed frame",
        ),
        (Netstring::new().boxed(), b"5:ab", "netstring"),
        (Netstring::new().boxed(), b"12", "netstring"),
        (Netstring::new().boxed(), b"2:ab", "netstring"),
        (Cobs::new().boxed(), b"\x03\x11", "COBS frame"),
        (Cobs::zpe().boxed(), b"\xe1", "COBS frame"),
        (Chunk::new(5).boxed(), b"abc", "chunk"),
        (
            Stuffing::default().boxed(),
            b"\xff\xff\xff\xff\xffab",
            "stuffed frame",
        ),
    ];
    for (mut framer, wire, what) in cases {
        for pieces in [vec![wire], bytewise(wire)] {
            let mut buf = BytesMut::new();
            for piece in pieces {
                buf.extend_from_slice(piece);
                assert!(pull(&mut framer, &mut buf).unwrap().is_empty());
            }
            let buffered = buf.len();
            let err = framer.frameify_eof(&mut buf).unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { what: w, buffered: b } if w == what && b == buffered),
                "{}: {err:?}",
                hex(wire)
            );
            assert_eq!(
                err.to_string(),
                format!("input ended inside a {what} ({buffered} bytes of it were buffered)")
            );
        }
    }
    // The length field counts as buffered bytes of the frame.
    let mut buf = BytesMut::from(&b"\x00\x05ab"[..]);
    let err = pull_eof(&mut LengthPrefixed::u16_be(), &mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input ended inside a length-prefixed frame (4 bytes of it were buffered)"
    );
}

#[test]
fn a_piecewise_record_cut_off_by_the_end_of_input_comes_out_and_then_is_truncated() {
    let mut framer = Chunk::new(5).piecewise(true);
    let mut buf = BytesMut::from(&b"abc"[..]);
    assert_eq!(framer.frameify_eof(&mut buf).unwrap().unwrap(), "abc");
    let err = framer.frameify_eof(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        FrameError::Truncated {
            what: "chunk",
            buffered: 3
        }
    ));
}

/// The frames expected from a wire.
type Expected = &'static [&'static str];

#[test]
fn the_end_of_input_after_whole_frames_or_junk_is_no_error() {
    let cases: Vec<(BoxFramer<Bytes>, &[u8], Expected)> = vec![
        (Line::crlf().boxed(), b"a\r\nlast\r", &["a", "last"]),
        (Line::lf().boxed(), b"a\nlast", &["a", "last"]),
        (
            Delimiter::new(b"\r\n.\r\n").unwrap().boxed(),
            b"a\r\n.\r\nb\r\n.",
            &["a", "b\r\n."],
        ),
        (LengthPrefixed::u8().boxed(), b"\x01a", &["a"]),
        (Netstring::new().boxed(), b"1:a,", &["a"]),
        (Cobs::new().boxed(), b"\x02a\x00", &["a"]),
        (Stuffing::default().boxed(), b"junk\xff\xff\xff", &[]),
        (Chunk::new(1).boxed(), b"ab", &["a", "b"]),
        (Chunk::new(2).piecewise(true).boxed(), b"ab", &["ab"]),
    ];
    for (mut framer, wire, expected) in cases {
        let (frames, rest) = feed(&mut framer, [wire]).unwrap();
        assert_eq!(frames, expected, "{}", hex(wire));
        assert!(rest.is_empty());
        // And an empty buffer at the end is nothing.
        assert!(framer.frameify_eof(&mut BytesMut::new()).unwrap().is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// Frames that cannot be sent.

/// `streamify` must refuse `frame` and write nothing.
fn refuses<F: Framer>(framer: &mut F, frame: F::Frame) -> FrameError {
    let mut out = Outgoing::new();
    out.put_slice(b"before");
    let err = framer.streamify(frame, &mut out).unwrap_err();
    assert_eq!(
        out.take_all(),
        "before",
        "bytes written for a refused frame"
    );
    err
}

#[test]
fn a_line_with_a_newline_is_not_sent() {
    for mut framer in [Line::crlf(), Line::lf()] {
        let err = refuses(&mut framer, "two\nlines".into());
        assert!(matches!(err, FrameError::Unencodable { what: "line", .. }));
        assert_eq!(
            err.to_string(),
            "cannot send this line: it contains '\\n' and would arrive as two lines"
        );
        let err = refuses(&mut framer, "ends\n".into());
        assert!(matches!(err, FrameError::Unencodable { .. }));
    }
    let err = refuses(&mut Line::crlf().max_length(3), "four".into());
    assert_eq!(err.to_string(), "line longer than 3 bytes");
    // A carriage return is fine, even at the end.
    let wire = encode(&mut Line::crlf(), "cr\r".into()).unwrap();
    assert_eq!(wire, "cr\r\r\n");
    let (frames, _) = feed(&mut Line::crlf(), [&wire[..]]).unwrap();
    assert_eq!(frames, ["cr\r"]);
}

#[test]
fn a_frame_containing_the_delimiter_is_not_sent_even_across_the_seam() {
    let mut framer = Delimiter::new(b"\r\n.\r\n").unwrap();
    for body in [
        "a\r\n.\r\nb",
        "\r\n.\r\n",
        "body\r\n.",
        "\r\n.",
        "x\r\n.\r\n",
    ] {
        let err = refuses(&mut framer, Bytes::from(body));
        assert!(
            matches!(
                err,
                FrameError::Unencodable {
                    what: "delimited frame",
                    ..
                }
            ),
            "{body:?}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            "cannot send this delimited frame: it contains the delimiter and would arrive as two frames"
        );
    }
    // Near misses go out and come back intact.
    for body in [
        "body\r\n",
        "body\r",
        "body\r\n.\r",
        "body\r\n.x",
        ".\r\n",
        "\n.\r\n",
        "",
    ] {
        let wire = encode(&mut framer, Bytes::from(body)).unwrap();
        let (frames, rest) =
            feed(&mut Delimiter::new(b"\r\n.\r\n").unwrap(), bytewise(&wire)).unwrap();
        assert_eq!(frames, [body], "{body:?}");
        assert!(rest.is_empty());
    }
    // With keep_delimiter a frame may end with the delimiter, once.
    let mut keep = Delimiter::new(b"\r\n.\r\n").unwrap().keep_delimiter(true);
    assert_eq!(
        encode(&mut keep, "a\r\n.\r\n".into()).unwrap(),
        "a\r\n.\r\n"
    );
    assert_eq!(encode(&mut keep, "a".into()).unwrap(), "a\r\n.\r\n");
    refuses(&mut keep, "a\r\n.\r\n\r\n.\r\n".into());
    // A delimiter that overlaps itself.
    let mut aa = Delimiter::new(b"aa").unwrap();
    refuses(&mut aa, "xa".into());
    assert_eq!(encode(&mut aa, "ax".into()).unwrap(), "axaa");
}

#[test]
fn length_prefixed_frames_that_do_not_fit_the_field_are_not_sent() {
    let err = refuses(&mut LengthPrefixed::u8(), Bytes::from(vec![0u8; 300]));
    assert!(matches!(
        err,
        FrameError::LengthFieldOverflow {
            value: 300,
            field_max: 255
        }
    ));
    assert_eq!(
        err.to_string(),
        "length 300 does not fit the length field (at most 255); use a wider field"
    );
    // 255 fits, and so does 254 plus a counted one-byte header.
    assert!(encode(&mut LengthPrefixed::u8(), Bytes::from(vec![0u8; 255])).is_ok());
    assert!(encode(
        &mut LengthPrefixed::u8().counts_header(true),
        Bytes::from(vec![0u8; 254])
    )
    .is_ok());
    refuses(
        &mut LengthPrefixed::u8().counts_header(true),
        Bytes::from(vec![0u8; 255]),
    );
    // A negative adjustment larger than the body.
    let err = refuses(&mut LengthPrefixed::u8().adjustment(-5), "ab".into());
    assert!(matches!(
        err,
        FrameError::LengthFieldOverflow { value: -3, .. }
    ));
    // Shorter than the header before the field.
    let err = refuses(&mut LengthPrefixed::u16_be().offset(3), "ab".into());
    assert_eq!(
        err.to_string(),
        "cannot send this length-prefixed frame: it is shorter than the header before the length field"
    );
    let err = refuses(
        &mut LengthPrefixed::new(LengthField::U16Le).max_length(2),
        "abc".into(),
    );
    assert!(matches!(err, FrameError::TooLong { max: 2, .. }));
}

#[test]
fn a_record_of_the_wrong_length_is_not_sent() {
    for frame in ["abcd", "abcdef", ""] {
        let err = refuses(&mut Chunk::new(5), frame.into());
        assert_eq!(
            err.to_string(),
            "cannot send this chunk: its length differs from the record length"
        );
    }
    // Piecewise, any length goes.
    assert_eq!(
        encode(&mut Chunk::new(5).piecewise(true), "abcdefg".into()).unwrap(),
        "abcdefg"
    );
}

#[test]
fn frames_over_the_maximum_are_not_sent() {
    let big = Bytes::from(vec![b'x'; 11]);
    let cases: Vec<(BoxFramer<Bytes>, &str)> = vec![
        (
            Cobs::new().max_length(10).boxed(),
            "COBS frame longer than 10 bytes",
        ),
        (
            Stuffing::default().max_length(10).boxed(),
            "stuffed frame longer than 10 bytes",
        ),
        (
            Netstring::new().max_length(10).boxed(),
            "netstring longer than 10 bytes",
        ),
        (
            Delimiter::new(b";").unwrap().max_length(10).boxed(),
            "delimited frame longer than 10 bytes",
        ),
        (
            LengthPrefixed::u8().max_length(10).boxed(),
            "length-prefixed frame longer than 10 bytes",
        ),
    ];
    for (mut framer, message) in cases {
        let err = refuses(&mut framer, big.clone());
        assert_eq!(err.to_string(), message);
        assert!(!err.is_recoverable());
    }
}

// ---------------------------------------------------------------------------------------------
// Bugs found while writing these tests (see the ignore reasons).

#[test]
fn line_and_delimiter_accept_usize_max_as_their_maximum() {
    let mut buf = BytesMut::from(&b"no newline yet"[..]);
    assert!(Line::crlf()
        .max_length(usize::MAX)
        .frameify(&mut buf)
        .unwrap()
        .is_none());
    let mut buf = BytesMut::from(&b"no delimiter yet"[..]);
    let mut framer = Delimiter::new(b"\r\n.\r\n").unwrap().max_length(usize::MAX);
    assert!(framer.frameify(&mut buf).unwrap().is_none());
}

#[test]
fn cobs_accepts_usize_max_as_its_maximum() {
    let mut buf = BytesMut::from(&[0x03, 0x11][..]);
    assert!(Cobs::new()
        .max_length(usize::MAX)
        .frameify(&mut buf)
        .unwrap()
        .is_none());
}

#[test]
fn stuffing_accepts_usize_max_as_its_maximum() {
    let mut buf = BytesMut::from(&b"\xff\xff\xff\xff\xffpartial"[..]);
    let mut framer = Stuffing::default().max_length(usize::MAX);
    assert!(framer.frameify(&mut buf).unwrap().is_none());
}

#[test]
fn a_netstring_length_above_u64_max_is_an_error_whatever_the_maximum() {
    let mut buf = BytesMut::from(&b"99999999999999999999"[..]);
    let result = Netstring::new().max_length(usize::MAX).frameify(&mut buf);
    assert!(result.is_err(), "{result:?}");
    let mut buf = BytesMut::from(&b"18446744073709551615:"[..]);
    let result = Netstring::new().max_length(usize::MAX).frameify(&mut buf);
    assert!(result.is_err(), "{result:?}");
}

#[test]
fn a_u64_max_length_prefix_is_an_error_whatever_the_maximum() {
    let mut buf = BytesMut::from(&[0xff; 8][..]);
    let result = LengthPrefixed::new(LengthField::U64Be)
        .max_length(usize::MAX)
        .frameify(&mut buf);
    assert!(
        matches!(result, Err(FrameError::TooLong { .. })),
        "{result:?}"
    );
}

/// Every event of `make()` fed `wire` whole and byte by byte, up to an unrecoverable error
/// (shown as `<failed>`).
fn events_by_cut<F: Framer<Frame = Bytes>>(make: impl Fn() -> F, wire: &[u8]) -> [Vec<String>; 2] {
    [vec![wire], bytewise(wire)].map(|pieces| {
        let mut framer = make();
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        'feed: for (i, piece) in pieces.iter().enumerate() {
            buf.extend_from_slice(piece);
            loop {
                let result = if i + 1 == pieces.len() {
                    framer.frameify(&mut buf).and_then(|f| match f {
                        Some(f) => Ok(Some(f)),
                        None => framer.frameify_eof(&mut buf),
                    })
                } else {
                    framer.frameify(&mut buf)
                };
                match result {
                    Ok(Some(frame)) => events.push(String::from_utf8_lossy(&frame).into_owned()),
                    Ok(None) => break,
                    Err(e) if e.is_recoverable() => events.push("<skipped>".into()),
                    Err(_) => {
                        events.push("<failed>".into());
                        break 'feed;
                    }
                }
            }
        }
        events
    })
}

#[test]
fn an_oversized_malformed_cobs_frame_is_skipped_however_it_arrives() {
    // A frame over the maximum (2) whose second code (0x09) runs past the delimiter, then a good
    // frame. In pieces it is skipped as too long; whole it is a CobsOverrun that ends the stream.
    let wire = [0x05, 1, 1, 1, 1, 0x09, 1, 0x00, 0x03, b'o', b'k', 0x00];
    let [whole, pieces] =
        events_by_cut(|| Cobs::new().max_length(2).discard_oversized(true), &wire);
    assert_eq!(pieces, ["<skipped>", "ok"]);
    assert_eq!(whole, pieces);
}

#[test]
fn an_oversized_stuffed_frame_is_skipped_the_same_way_however_it_arrives() {
    // An oversized frame with a second start marker inside it ("zzzz" before "ok"). Whole, the
    // end marker is found first and everything up to it is one oversized frame: skipped. Byte
    // by byte the frame is dropped before the second start marker arrives, which then starts a
    // frame: skipped, "ok".
    let wire = b"zzzzxxxxxxzzzzokzzzw";
    let make = || {
        Stuffing::new(b"zzz", b'z', b'w', b'a')
            .unwrap()
            .max_length(2)
            .discard_oversized(true)
    };
    let [whole, pieces] = events_by_cut(make, wire);
    assert_eq!(whole, pieces);
}

#[test]
fn a_padded_varint_length_is_refused_so_every_frame_re_encodes() {
    use tendril_core::FrameError;
    let mut framer = LengthPrefixed::varint().adjustment(-2).counts_header(true);
    let mut buf = bytes::BytesMut::from(&[0x80u8, 0x00][..]);
    let err = framer.frameify(&mut buf).unwrap_err();
    assert!(matches!(err, FrameError::VarintNotMinimal), "{err}");
    // A minimal one is fine.
    let mut framer = LengthPrefixed::varint();
    let mut buf = bytes::BytesMut::from(&[0x00u8][..]);
    assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "");
}
