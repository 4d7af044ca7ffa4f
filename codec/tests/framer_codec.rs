//! A Tendril framer as a tokio-util codec: driven through `Decoder::decode` and `decode_eof`
//! over any cutting of the wire, a `FramerCodec` gives what the native framer gives over the
//! whole wire; its `Encoder` writes what the framer's `streamify` writes; and through both
//! bridges in a row (`CodecFramer<FramerCodec<F>>`) a framer is itself again.

mod common;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use tendril_codec::{CodecError, CodecFramer, FramerCodec};
use tendril_core::{
    BoxFramer, Chunk, Cobs, Delimiter, Framer, Identity, LengthField, LengthPrefixed, Line,
    Netstring, Outgoing, Stuffing,
};
use tokio_util::codec::Encoder;

use common::{
    cuts, drive_decoder, drive_framer, encode, frames_of, pieces, skips, without_skips, Step,
    TOKENS,
};

/// One framer configuration under test: as configured (small limits, discard modes) and the
/// same format without limits, to put oversized frames on the wire.
struct Case {
    name: &'static str,
    make: fn() -> BoxFramer<Bytes>,
    unlimited: fn() -> BoxFramer<Bytes>,
}

const fn case(name: &'static str, make: fn() -> BoxFramer<Bytes>) -> Case {
    Case {
        name,
        make,
        unlimited: make,
    }
}

fn stuffing_z() -> Stuffing {
    Stuffing::new(b"zzz", b'z', b'w', b'a').unwrap()
}

/// Every framer whose frames do not depend on how the input is cut.
const CASES: &[Case] = &[
    case("line crlf", || Line::crlf().boxed()),
    Case {
        name: "line lf, max 6, discard",
        make: || Line::lf().max_length(6).discard_oversized(true).boxed(),
        unlimited: || Line::lf().max_length(usize::MAX).boxed(),
    },
    Case {
        name: "line crlf, max 6",
        make: || Line::crlf().max_length(6).boxed(),
        unlimited: || Line::crlf().max_length(usize::MAX).boxed(),
    },
    case("delimiter crlf.crlf", || {
        Delimiter::new(b"\r\n.\r\n").unwrap().boxed()
    }),
    Case {
        name: "delimiter ',', max 5, discard",
        make: || {
            Delimiter::new(b",")
                .unwrap()
                .max_length(5)
                .discard_oversized(true)
                .boxed()
        },
        unlimited: || Delimiter::new(b",").unwrap().max_length(usize::MAX).boxed(),
    },
    Case {
        name: "delimiter 'aba' kept, max 8, discard",
        make: || {
            Delimiter::new(b"aba")
                .unwrap()
                .keep_delimiter(true)
                .max_length(8)
                .discard_oversized(true)
                .boxed()
        },
        unlimited: || {
            Delimiter::new(b"aba")
                .unwrap()
                .keep_delimiter(true)
                .max_length(usize::MAX)
                .boxed()
        },
    },
    case("length u8", || LengthPrefixed::u8().boxed()),
    Case {
        name: "length u16 be, max 20",
        make: || LengthPrefixed::u16_be().max_length(20).boxed(),
        unlimited: || LengthPrefixed::u16_be().boxed(),
    },
    case("length u32 le", || {
        LengthPrefixed::new(LengthField::U32Le).boxed()
    }),
    case("length u64 be", || {
        LengthPrefixed::new(LengthField::U64Be).boxed()
    }),
    Case {
        name: "length varint, max 40",
        make: || LengthPrefixed::varint().max_length(40).boxed(),
        unlimited: || LengthPrefixed::varint().boxed(),
    },
    case(
        "length u16 le, offset 2, adjustment -1, counts header",
        || {
            LengthPrefixed::new(LengthField::U16Le)
                .offset(2)
                .adjustment(-1)
                .counts_header(true)
                .boxed()
        },
    ),
    case("length varint, offset 1, counts header", || {
        LengthPrefixed::varint()
            .offset(1)
            .counts_header(true)
            .boxed()
    }),
    case("netstring", || Netstring::new().boxed()),
    Case {
        name: "netstring, max 10",
        make: || Netstring::new().max_length(10).boxed(),
        unlimited: || Netstring::new().boxed(),
    },
    case("cobs", || Cobs::new().boxed()),
    case("cobs zpe", || Cobs::zpe().boxed()),
    Case {
        name: "cobs, max 8, discard",
        make: || Cobs::new().max_length(8).discard_oversized(true).boxed(),
        unlimited: || Cobs::new().boxed(),
    },
    case("stuffing", || Stuffing::default().boxed()),
    Case {
        name: "stuffing zzz, max 10, discard",
        make: || stuffing_z().max_length(10).discard_oversized(true).boxed(),
        unlimited: || stuffing_z().boxed(),
    },
    case("chunk 3", || Chunk::new(3).boxed()),
    case("chunk 7", || Chunk::new(7).boxed()),
];

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(1024)
}

fn codec_of(case: &Case) -> FramerCodec<BoxFramer<Bytes>> {
    FramerCodec::with_framers((case.make)(), (case.make)())
}

/// Frames encoded without limits, with arbitrary bytes (a bad peer, a cut) somewhere in them.
fn wire(case: &Case, frames: &[Vec<u8>], garbage: &[u8], at: Index) -> Vec<u8> {
    let mut wire = encode(&mut *(case.unlimited)(), frames);
    let at = at.index(wire.len() + 1);
    wire.splice(at..at, garbage.iter().copied());
    wire
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        1 => vec(any::<u8>(), 1..12),
        1 => frames_of(TOKENS, 3).prop_map(|f| f.concat()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoding_in_pieces_gives_the_native_frames_of_the_whole(
        which in 0..CASES.len(),
        frames in frames_of(TOKENS, 6),
        garbage in garbage(),
        garbage_at in any::<Index>(),
        cuts in cuts(),
    ) {
        let case = &CASES[which];
        let wire = wire(case, &frames, &garbage, garbage_at);
        let native = drive_framer(&mut *(case.make)(), &[&wire]);
        let pieces = pieces(&wire, &cuts);

        // By default a skipped frame is passed over and counted, as `Framed` needs.
        let mut codec = codec_of(case);
        let got = drive_decoder(&mut codec, &pieces, |_| false);
        prop_assert_eq!(&got, &without_skips(&native), "{}", case.name);
        prop_assert_eq!(codec.skipped(), skips(&native), "{}", case.name);

        // Reporting skips, the codec says everything the framer says.
        let mut codec = codec_of(case).report_skipped(true);
        let got = drive_decoder(&mut codec, &pieces, CodecError::is_recoverable);
        prop_assert_eq!(&got, &native, "{}", case.name);
    }

    #[test]
    fn encoding_writes_what_streamify_writes(
        which in 0..CASES.len(),
        frames in frames_of(TOKENS, 12),
    ) {
        let case = &CASES[which];
        let mut native = (case.make)();
        let mut codec = codec_of(case);
        let mut dst = BytesMut::from("already queued;");
        let mut expected = dst.to_vec();
        for frame in &frames {
            let frame = Bytes::copy_from_slice(frame);
            let mut out = Outgoing::new();
            let native_result = native.streamify(frame.clone(), &mut out);
            let codec_result = codec.encode(frame, &mut dst);
            match (native_result, codec_result) {
                (Ok(()), Ok(())) => expected.extend_from_slice(&out.take_all()),
                (Err(n), Err(c)) => prop_assert_eq!(n.to_string(), c.to_string()),
                (n, c) => prop_assert!(false, "{}: native {:?}, codec {:?}", case.name, n, c),
            }
            prop_assert_eq!(&dst[..], &expected[..], "{}", case.name);
        }
    }

    #[test]
    fn frames_encoded_by_the_codec_come_back_out_of_it_however_the_wire_is_cut(
        which in 0..CASES.len(),
        frames in frames_of(TOKENS, 12),
        cuts in cuts(),
    ) {
        let case = &CASES[which];
        // A kept delimiter comes back as part of the frame: not a round trip by design.
        prop_assume!(!case.name.contains("kept"));
        let mut codec = codec_of(case);
        let mut wire = BytesMut::new();
        let mut sent = Vec::new();
        for frame in &frames {
            if codec.encode(Bytes::copy_from_slice(frame), &mut wire).is_ok() {
                sent.push(Step::Frame(frame.clone()));
            }
        }
        let got = drive_decoder(&mut codec_of(case), &pieces(&wire, &cuts), |_| false);
        prop_assert_eq!(got, sent, "{}", case.name);
    }

    #[test]
    fn through_both_bridges_a_framer_is_itself_again(
        which in 0..CASES.len(),
        frames in frames_of(TOKENS, 6),
        garbage in garbage(),
        garbage_at in any::<Index>(),
        cuts in cuts(),
    ) {
        let case = &CASES[which];
        let make = case.make;
        let wire = wire(case, &frames, &garbage, garbage_at);
        let native = drive_framer(&mut *make(), &[&wire]);
        let mut twice: CodecFramer<_, Bytes> =
            CodecFramer::with_factory(move || FramerCodec::with_framers(make(), make()));
        let got = drive_framer(&mut twice, &pieces(&wire, &cuts));
        prop_assert_eq!(got, without_skips(&native), "{}", case.name);
        let mut out = Outgoing::new();
        for frame in &frames {
            let frame = Bytes::copy_from_slice(frame);
            let mut expected = Outgoing::new();
            let native_ok = make().streamify(frame.clone(), &mut expected).is_ok();
            prop_assert_eq!(twice.streamify(frame, &mut out).is_ok(), native_ok);
            prop_assert_eq!(out.take_all(), expected.take_all());
        }
    }

    /// `Identity` and piecewise `Chunk` frames are what each read brought, so they are compared
    /// with the native framer over the same pieces.
    #[test]
    fn read_shaped_framers_give_the_native_frames_of_the_same_pieces(
        which in 0..3usize,
        wire in vec(any::<u8>(), 0..200),
        cuts in cuts(),
    ) {
        let make: fn() -> BoxFramer<Bytes> = match which {
            0 => || Identity::new().boxed(),
            1 => || Identity::new().max_length(16).boxed(),
            _ => || Chunk::new(9).piecewise(true).boxed(),
        };
        let pieces = pieces(&wire, &cuts);
        let native = drive_framer(&mut *make(), &pieces);
        let mut codec = FramerCodec::with_framers(make(), make());
        let got = drive_decoder(&mut codec, &pieces, |_| false);
        prop_assert_eq!(&got, &native);
        if which < 2 {
            prop_assert_eq!(common::frames(&got).concat(), wire);
        }
    }
}

#[test]
fn every_case_with_a_limit_puts_oversized_frames_on_the_wire() {
    // The unlimited encoder really is unlimited, so the limits and discard modes get exercised.
    let long = vec![b'x'; 64];
    for case in CASES.iter().filter(|c| c.name.contains("max")) {
        let limited = encode(&mut *(case.make)(), std::slice::from_ref(&long));
        let unlimited = encode(&mut *(case.unlimited)(), std::slice::from_ref(&long));
        assert!(limited.is_empty() && !unlimited.is_empty(), "{}", case.name);
    }
}
