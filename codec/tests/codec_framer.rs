//! tokio-util codecs as Tendril framers: a `CodecFramer` gives what the codec itself gives,
//! over any cutting of the wire, and what the equivalent native framer gives where the wire
//! formats agree; encoding through one and decoding through the other round-trips. The
//! `LengthDelimitedCodec` builder options map to `LengthPrefixed` options as the root README's
//! "From tokio-util" table says.

mod common;

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use tendril_codec::{CodecFramer, DecoderOnly};
use tendril_core::{Delimiter, Framer, Identity, LengthField, LengthPrefixed, Line, Outgoing};
use tokio_util::codec::{
    AnyDelimiterCodec, BytesCodec, Decoder, Encoder, LengthDelimitedCodec, LinesCodec,
};

use common::{
    cuts, drive_decoder, drive_framer, encode, fate, frames, frames_of, pieces, skips,
    without_skips, Step,
};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(512)
}

/// UTF-8 text with line ends of both kinds and stray `\r`s.
fn text(tokens: &'static [&'static str], len: usize) -> impl Strategy<Value = String> {
    vec(select(tokens), 0..len).prop_map(|t| t.concat())
}

const LINE_TOKENS: &[&str] = &["a", "bc", "é", " ", "\r", "\n", "\r\n", "\n\n"];

/// What is left after the last `\n` is a lone `\r`: `LinesCodec` drops it at EOF, `Line`
/// returns an empty last line (see `a_lone_cr_at_eof_is_where_lines_codec_and_line_differ`).
fn ends_in_lone_cr(text: &str) -> bool {
    text.rsplit('\n').next() == Some("\r")
}

/// The length-field value a `LengthDelimitedCodec` or `LengthPrefixed` test frame carries.
fn field_of(width: usize, little: bool) -> LengthField {
    match (width, little) {
        (1, _) => LengthField::U8,
        (2, false) => LengthField::U16Be,
        (2, true) => LengthField::U16Le,
        (4, false) => LengthField::U32Be,
        (4, true) => LengthField::U32Le,
        (8, false) => LengthField::U64Be,
        _ => LengthField::U64Le,
    }
}

fn tokio_builder(
    width: usize,
    little: bool,
    offset: usize,
) -> tokio_util::codec::length_delimited::Builder {
    let mut builder = LengthDelimitedCodec::builder();
    builder
        .length_field_length(width)
        .length_field_offset(offset);
    if little {
        builder.little_endian();
    } else {
        builder.big_endian();
    }
    builder
}

/// What tokio-util's `LengthDelimitedCodec` is expected to make of input the native framer made
/// `native_log` of: the same frames (without the `offset`-byte header, which tokio-util's default
/// `num_skip` drops) and the same failure, but for input that ends right after a header: the
/// codec has taken the header off the buffer, so `decode_eof` finds nothing left and ends
/// cleanly where `LengthPrefixed` says `Truncated`.
fn as_tokio_sees_it(native_log: &[Step], offset: usize, width: usize) -> (Vec<Vec<u8>>, bool) {
    let (frames, failed) = fate(native_log);
    let frames = frames.into_iter().map(|f| f[offset..].to_vec()).collect();
    let just_a_header = format!(
        "input ended inside a length-prefixed frame ({} bytes of it were buffered)",
        offset + width
    );
    let cut_after_header = native_log.last() == Some(&Step::Error(just_a_header));
    (frames, failed && !cut_after_header)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn lines_codec_as_a_framer_is_lines_codec_and_decodes_like_line_crlf(
        text in text(LINE_TOKENS, 24),
        cuts in cuts(),
    ) {
        let pieces = pieces(text.as_bytes(), &cuts);
        let codec = drive_decoder(&mut LinesCodec::new(), &pieces, |_| false);
        let framer = drive_framer(&mut CodecFramer::new(LinesCodec::new()), &pieces);
        prop_assert_eq!(&framer, &codec);
        prop_assume!(!ends_in_lone_cr(&text));
        let native = drive_framer(&mut Line::crlf(), &[text.as_bytes()]);
        prop_assert_eq!(framer, native);
    }

    #[test]
    fn lines_codec_max_length_skips_the_lines_line_discards(
        text in text(&["a", "bcd", "\n", "efghij"], 24),
        max in 0usize..8,
        cuts in cuts(),
    ) {
        // Without `\r`: LinesCodec counts a `\r` before the `\n` in its limit, Line does not.
        let pieces = pieces(text.as_bytes(), &cuts);
        let codec = drive_decoder(&mut LinesCodec::new_with_max_length(max), &pieces, |_| true);
        let native = drive_framer(
            &mut Line::lf().max_length(max).discard_oversized(true),
            &[text.as_bytes()],
        );
        prop_assert_eq!(without_skips(&codec), without_skips(&native));
        prop_assert_eq!(skips(&codec), skips(&native));
        // In a Tendril a codec's error is never recoverable: the framer stops at the first.
        let framer = drive_framer(&mut CodecFramer::new(LinesCodec::new_with_max_length(max)), &pieces);
        let until_first = codec
            .iter()
            .position(|s| matches!(s, Step::Skipped(_)))
            .map_or(codec.clone(), |i| {
                let mut log = codec[..i].to_vec();
                log.push(Step::Error("max line length exceeded".into()));
                log
            });
        prop_assert_eq!(framer, until_first);
    }

    #[test]
    fn lines_round_trip_between_lines_codec_and_line(
        lines in vec(text(&["a", "bc", "é", " ", ","], 6), 0..6),
        cuts in cuts(),
    ) {
        let frames: Vec<Vec<u8>> = lines.iter().map(|l| l.clone().into_bytes()).collect();
        let expected: Vec<Step> = frames.iter().cloned().map(Step::Frame).collect();

        // The codec as a framer writes what LinesCodec and `Line::lf` write…
        let mut bridged = CodecFramer::new(LinesCodec::new());
        let mut out = Outgoing::new();
        let mut direct = bytes::BytesMut::new();
        for line in &lines {
            bridged.streamify(line.clone(), &mut out).unwrap();
            LinesCodec::new().encode(line.as_str(), &mut direct).unwrap();
        }
        let wire = out.take_all();
        prop_assert_eq!(&wire[..], &direct[..]);
        prop_assert_eq!(&wire[..], &encode(&mut Line::lf(), &frames)[..]);
        // …which Line reads back, and LinesCodec reads what `Line::crlf` writes.
        prop_assert_eq!(drive_framer(&mut Line::crlf(), &pieces(&wire, &cuts)), expected.clone());
        let crlf = encode(&mut Line::crlf(), &frames);
        prop_assert_eq!(
            drive_framer(&mut CodecFramer::new(LinesCodec::new()), &pieces(&crlf, &cuts)),
            expected
        );
    }

    #[test]
    fn length_delimited_codec_as_a_framer_is_the_codec_and_decodes_like_u32_be(
        bodies in frames_of(common::TOKENS, 20),
        garbage in vec(any::<u8>(), 0..10),
        cuts in cuts(),
    ) {
        let mut wire = encode(&mut LengthPrefixed::u32_be(), &bodies);
        wire.extend_from_slice(&garbage);
        let pieces = pieces(&wire, &cuts);
        let codec = drive_decoder(&mut LengthDelimitedCodec::new(), &pieces, |_| false);
        let framer = drive_framer(&mut CodecFramer::bytes(LengthDelimitedCodec::new()), &pieces);
        prop_assert_eq!(&framer, &codec);
        // The error messages differ ("bytes remaining on stream" where Tendril says
        // `Truncated`), the frames and where decoding fails do not, but for input that ends
        // right after a header (garbage `00 00 00 01`): the codec has taken the header off and
        // ends cleanly.
        let native = drive_framer(&mut LengthPrefixed::u32_be(), &[&wire]);
        prop_assert_eq!(fate(&framer), as_tokio_sees_it(&native, 0, 4));

        // And the other way: what the codec framer writes, u32_be reads.
        let mut bridged = CodecFramer::bytes(LengthDelimitedCodec::new());
        let sent = encode(&mut bridged, &bodies);
        prop_assert_eq!(&sent, &encode(&mut LengthPrefixed::u32_be(), &bodies));
        let back = drive_framer(&mut LengthPrefixed::u32_be(), &[&sent]);
        prop_assert_eq!(frames(&back), bodies);
    }

    /// `length_field_length`, the byte order, `length_field_offset` and `length_adjustment`
    /// (including the "field counts the header" form) against their `LengthPrefixed`
    /// counterparts, on well-formed input.
    #[test]
    fn length_delimited_builder_options_map_to_length_prefixed_options(
        width in select(&[1usize, 2, 4, 8][..]),
        little in any::<bool>(),
        offset in 0usize..4,
        adjustment in -4isize..=4,
        counts_header in any::<bool>(),
        bodies in vec(vec(any::<u8>(), 0..40), 0..6),
        cut_short in 0usize..3,
        cuts in cuts(),
    ) {
        let mut tokio = tokio_builder(width, little, offset);
        let mut native = LengthPrefixed::new(field_of(width, little)).offset(offset);
        if counts_header {
            // The field counts itself and the header: tokio-util subtracts them back out.
            tokio.length_adjustment(-((offset + width) as isize));
            native = native.counts_header(true);
        } else {
            // tokio-util adds its adjustment to the field to get the body length; Tendril's
            // field is the body length plus its adjustment: the opposite sign.
            tokio.length_adjustment(adjustment);
            native = native.adjustment(-(adjustment as i64));
        }
        // Each frame is a header of `offset` bytes, then the body.
        let frames: Vec<Vec<u8>> = bodies
            .iter()
            .map(|b| [vec![0x5a; offset], b.clone()].concat())
            .collect();
        let mut wire = encode(&mut native.clone(), &frames);
        wire.truncate(wire.len().saturating_sub(cut_short));
        let pieces = pieces(&wire, &cuts);

        let tokio_log = drive_framer(&mut CodecFramer::bytes(tokio.new_codec()), &pieces);
        let native_log = drive_framer(&mut native.clone(), &[&wire]);
        prop_assert_eq!(fate(&tokio_log), as_tokio_sees_it(&native_log, offset, width));

        // tokio-util's encoder writes no header, so the encoders agree without one.
        if offset == 0 {
            let mut codec = tokio.new_codec();
            for body in &bodies {
                let mut dst = bytes::BytesMut::new();
                let tokio_ok = codec.encode(Bytes::copy_from_slice(body), &mut dst).is_ok();
                let mut out = Outgoing::new();
                let native_ok = native.streamify(Bytes::copy_from_slice(body), &mut out).is_ok();
                prop_assert_eq!(tokio_ok, native_ok);
                prop_assert_eq!(&dst[..], &out.take_all()[..]);
            }
        }
    }

    /// `max_frame_length` is `max_length` when there is no adjustment (tokio-util compares the
    /// raw field value, Tendril the body length), on any input.
    #[test]
    fn max_frame_length_maps_to_max_length(
        width in select(&[1usize, 2, 4, 8][..]),
        little in any::<bool>(),
        offset in 0usize..3,
        max in 0usize..300,
        wire in vec(any::<u8>(), 0..120),
        cuts in cuts(),
    ) {
        let mut tokio = tokio_builder(width, little, offset);
        tokio.max_frame_length(max);
        let native = LengthPrefixed::new(field_of(width, little)).offset(offset).max_length(max);
        let tokio_log = drive_decoder(&mut tokio.new_codec(), &pieces(&wire, &cuts), |_| false);
        let native_log = drive_framer(&mut native.clone(), &[&wire]);
        prop_assert_eq!(fate(&tokio_log), as_tokio_sees_it(&native_log, offset, width));
    }

    #[test]
    fn any_delimiter_codec_with_one_byte_is_delimiter(
        text in text(&["a", "bc", ",", ",,", ";", "\n"], 30),
        max in proptest::option::of(0usize..6),
        cuts in cuts(),
    ) {
        let codec = || match max {
            Some(max) => AnyDelimiterCodec::new_with_max_length(b",".to_vec(), b",".to_vec(), max),
            None => AnyDelimiterCodec::new(b",".to_vec(), b",".to_vec()),
        };
        let native = match max {
            Some(max) => Delimiter::new(b",").unwrap().max_length(max).discard_oversized(true),
            None => Delimiter::new(b",").unwrap(),
        };
        let pieces = pieces(text.as_bytes(), &cuts);
        let direct = drive_decoder(&mut codec(), &pieces, |_| true);
        let native_log = drive_framer(&mut native.clone(), &[text.as_bytes()]);
        // A skip is reported when the codec sees the frame is too long, and when Delimiter
        // has skipped it: the same frames, the same number of skips.
        prop_assert_eq!(without_skips(&direct), without_skips(&native_log));
        prop_assert_eq!(skips(&direct), skips(&native_log));
        if max.is_none() {
            // It encodes strings, not the `Bytes` it decodes: a receive framer.
            let mut framer = CodecFramer::new(DecoderOnly::new(codec()));
            prop_assert_eq!(drive_framer(&mut framer, &pieces), direct);
        }
        // What it writes, Delimiter writes (for frames Delimiter accepts).
        let mut out = Outgoing::new();
        let mut dst = bytes::BytesMut::new();
        for field in text.split(',') {
            codec().encode(field, &mut dst).unwrap();
            native.clone().streamify(Bytes::copy_from_slice(field.as_bytes()), &mut out).ok();
        }
        if max.is_none() {
            prop_assert_eq!(&dst[..], &out.take_all()[..]);
        }
    }

    #[test]
    fn bytes_codec_as_a_framer_is_bytes_codec_and_identity(
        wire in vec(any::<u8>(), 0..300),
        cuts in cuts(),
    ) {
        let pieces = pieces(&wire, &cuts);
        let codec = drive_decoder(&mut BytesCodec::new(), &pieces, |_| false);
        let framer = drive_framer(&mut CodecFramer::bytes(BytesCodec::new()), &pieces);
        let native = drive_framer(&mut Identity::new(), &pieces);
        prop_assert_eq!(&framer, &codec);
        prop_assert_eq!(&framer, &native);
        let frames = frames(&framer);
        prop_assert_eq!(
            encode(&mut CodecFramer::bytes(BytesCodec::new()), &frames),
            encode(&mut Identity::new(), &frames)
        );
    }

    /// A codec framer in a `Tendril`, fed the wire in pieces, delivers what the native framer
    /// delivers there.
    #[test]
    fn in_a_tendril_length_delimited_codec_delivers_what_u32_be_delivers(
        bodies in frames_of(common::TOKENS, 20),
        cuts in cuts(),
    ) {
        use core::time::Duration;
        use tendril_core::{Proto, Tendril};

        let wire = encode(&mut LengthPrefixed::u32_be(), &bodies);
        let run = |mut t: Tendril| {
            let mut got = Vec::new();
            for piece in pieces(&wire, &cuts) {
                t.handle_data(Duration::ZERO, piece);
                while let Some(frame) = t.poll_frame() {
                    got.push(frame.to_vec());
                }
            }
            t.handle_eof(Duration::ZERO);
            while let Some(frame) = t.poll_frame() {
                got.push(frame.to_vec());
            }
            (got, t.is_closed())
        };
        let bridged = run(Tendril::new(
            Proto::TCP,
            CodecFramer::bytes(LengthDelimitedCodec::new()),
            LengthPrefixed::u32_be(),
        ));
        let native = run(Tendril::new(Proto::TCP, LengthPrefixed::u32_be(), LengthPrefixed::u32_be()));
        prop_assert_eq!(&bridged, &native);
        prop_assert_eq!(bridged.0, bodies);
    }
}

#[test]
fn a_lone_cr_at_eof_is_where_lines_codec_and_line_differ() {
    let pieces: &[&[u8]] = &[b"one\n\r"];
    let codec = drive_decoder(&mut LinesCodec::new(), pieces, |_| false);
    assert_eq!(codec, [Step::Frame(b"one".to_vec())]);
    let native = drive_framer(&mut Line::crlf(), pieces);
    assert_eq!(
        native,
        [Step::Frame(b"one".to_vec()), Step::Frame(Vec::new())]
    );
}

#[test]
fn lines_codec_counts_a_cr_in_its_limit_and_line_does_not() {
    let mut codec = LinesCodec::new_with_max_length(3);
    assert!(codec.decode(&mut bytes::BytesMut::from("abc\r\n")).is_err());
    let mut line = Line::crlf().max_length(3);
    assert_eq!(
        line.frameify(&mut bytes::BytesMut::from("abc\r\n"))
            .unwrap()
            .unwrap(),
        "abc"
    );
}

#[test]
fn a_stale_scan_offset_makes_lines_codec_panic_which_reset_prevents() {
    // Why `CodecFramer::reset` puts in a fresh codec: LinesCodec remembers how far it searched,
    // and another framer that took bytes off the buffer in between leaves that offset past the
    // buffer's end.
    let stale = std::panic::catch_unwind(|| {
        let mut codec = LinesCodec::new();
        let mut buf = bytes::BytesMut::from("partial");
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        let _ = buf.split_to(5); // another framer's frame
        let _ = codec.decode(&mut buf);
    });
    assert!(
        stale.is_err(),
        "LinesCodec no longer panics on a stale offset"
    );

    let mut framer = CodecFramer::new(LinesCodec::new());
    let mut buf = bytes::BytesMut::from("partial");
    assert_eq!(framer.frameify(&mut buf).unwrap(), None);
    let _ = buf.split_to(5);
    framer.reset();
    assert_eq!(framer.frameify(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"\n");
    assert_eq!(framer.frameify(&mut buf).unwrap().unwrap(), "al");
}

#[test]
fn length_delimited_codec_ends_cleanly_when_input_stops_after_a_length_field() {
    let pieces: &[&[u8]] = &[b"\0\0\0\x05"];
    let tokio = drive_decoder(&mut LengthDelimitedCodec::new(), pieces, |_| false);
    assert_eq!(tokio, []);
    let native = drive_framer(&mut LengthPrefixed::u32_be(), pieces);
    assert_eq!(
        native,
        [Step::Error(
            "input ended inside a length-prefixed frame (4 bytes of it were buffered)".into()
        )]
    );
}

#[test]
fn length_delimited_codec_offset_bytes_are_dropped_and_lengthprefixed_keeps_them() {
    // The README's `length_field_offset` row, by example: a 2-byte header, then a u16 length.
    let wire: &[u8] = b"HD\x00\x03abc";
    let mut tokio = LengthDelimitedCodec::builder()
        .length_field_offset(2)
        .length_field_type::<u16>()
        .new_codec();
    let frame = tokio
        .decode(&mut bytes::BytesMut::from(wire))
        .unwrap()
        .unwrap();
    assert_eq!(frame, "abc");
    let mut native = LengthPrefixed::u16_be().offset(2);
    let frame = native
        .frameify(&mut bytes::BytesMut::from(wire))
        .unwrap()
        .unwrap();
    assert_eq!(frame, "HDabc");
}
