//! Round trips: random frames → `streamify` → the wire cut at random points → `frameify` after
//! every piece, then `frameify_eof` → the same frames, nothing left over. And the same
//! framers fed arbitrary bytes give the same frames however the input is cut.

mod common;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use tendril_core::{
    Chunk, Cobs, Delimiter, FrameError, Framer, Identity, LengthField, LengthPrefixed, Line,
    Netstring, Stuffing,
};

use common::{bytewise, encode_each, feed, hexes, pull_eof, split_at};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Where the wire is cut into the pieces that arrive one after another.
#[derive(Debug, Clone)]
enum Cuts {
    At(Vec<Index>),
    Bytewise,
}

fn cuts() -> impl Strategy<Value = Cuts> {
    prop_oneof![
        4 => vec(any::<Index>(), 0..12).prop_map(Cuts::At),
        1 => Just(Cuts::Bytewise),
    ]
}

fn pieces<'a>(wire: &'a [u8], cuts: &Cuts) -> Vec<&'a [u8]> {
    match cuts {
        Cuts::At(at) => {
            let at: Vec<usize> = at.iter().map(|i| i.index(wire.len() + 1)).collect();
            split_at(wire, &at)
        }
        Cuts::Bytewise => bytewise(wire),
    }
}

/// Frames made of `tokens` (byte strings that matter to the framer) and random bytes.
fn frames_of(tokens: Vec<Vec<u8>>, max_tokens: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
    let token = prop_oneof![
        3 => select(tokens),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ];
    vec(vec(token, 0..max_tokens).prop_map(|t| t.concat()), 0..8)
}

fn longest(frames: &[Vec<u8>]) -> usize {
    frames.iter().map(Vec::len).max().unwrap_or(0)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decode `wire` cut at `cuts` with `decoder` and compare with `expected`.
fn decodes_to<F: Framer<Frame = Bytes>>(
    decoder: &mut F,
    wire: &[u8],
    cuts: &Cuts,
    expected: &[Bytes],
) -> Result<(), TestCaseError> {
    let (frames, rest) = feed(decoder, pieces(wire, cuts))
        .map_err(|e| TestCaseError::fail(format!("decoding failed: {e}")))?;
    prop_assert_eq!(hexes(&frames), hexes(expected));
    prop_assert!(rest.is_empty(), "left in the buffer: {:?}", rest);
    Ok(())
}

/// What decoding produced: the frames up to the first error that ends the stream, with the
/// recoverable errors among them as `None`, and whether such an error came.
fn outcome<F: Framer<Frame = Bytes>>(
    framer: &mut F,
    pieces: &[&[u8]],
) -> (Vec<Option<Bytes>>, bool) {
    /// Pull frames until `Ok(None)` (`Ok`) or an error that ends the stream (`Err`).
    fn step<F: Framer<Frame = Bytes>>(
        framer: &mut F,
        buf: &mut BytesMut,
        events: &mut Vec<Option<Bytes>>,
        eof: bool,
    ) -> Result<(), ()> {
        loop {
            let result = if eof {
                framer.frameify_eof(buf)
            } else {
                framer.frameify(buf)
            };
            match result {
                Ok(Some(frame)) => events.push(Some(frame)),
                Ok(None) => return Ok(()),
                Err(e) if e.is_recoverable() => events.push(None),
                Err(_) => return Err(()),
            }
            assert!(events.len() <= 100_000, "no end to the frames");
        }
    }
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        if step(framer, &mut buf, &mut events, false).is_err() {
            return (events, true);
        }
    }
    let failed = step(framer, &mut buf, &mut events, true).is_err();
    if !failed {
        assert!(buf.is_empty(), "frameify_eof left {buf:?}");
    }
    (events, failed)
}

/// Arbitrary input fed whole and cut at `cuts` gives the same frames and the same failure.
fn cut_independent<F: Framer<Frame = Bytes>>(
    make: impl Fn() -> F,
    input: &[u8],
    cuts: &Cuts,
) -> Result<(), TestCaseError> {
    let (whole, whole_failed) = outcome(&mut make(), &[input]);
    let (cut, cut_failed) = outcome(&mut make(), &pieces(input, cuts));
    let show = |events: &[Option<Bytes>]| -> Vec<String> {
        events
            .iter()
            .map(|e| e.as_ref().map_or("<skipped>".into(), |f| common::hex(f)))
            .collect()
    };
    prop_assert_eq!(show(&whole), show(&cut));
    prop_assert_eq!(whole_failed, cut_failed);
    Ok(())
}

const FIELDS: [LengthField; 8] = [
    LengthField::U8,
    LengthField::U16Be,
    LengthField::U16Le,
    LengthField::U32Be,
    LengthField::U32Le,
    LengthField::U64Be,
    LengthField::U64Le,
    LengthField::Varint,
];

/// Stuffing parameters: the defaults, the original's documented examples, or random valid ones
/// over a small alphabet (so prefixes repeat bytes and contain `begin`).
fn stuffing_params() -> impl Strategy<Value = (Vec<u8>, u8, u8, u8)> {
    let random = (
        vec(select(b"abz\xff".to_vec()), 1..=4),
        select(b"abzwn\xff\xfe\x00".to_vec()),
        select(b"abzwn\xff\xfe\x00".to_vec()),
        select(b"abzwn\xff\xfe\x00".to_vec()),
    )
        .prop_filter("valid stuffing parameters", |(p, b, e, n)| {
            Stuffing::new(p, *b, *e, *n).is_ok()
        });
    prop_oneof![
        1 => Just((vec![0xff; 4], 0xff, 0xfe, 0x00)),
        1 => Just((b"zzz".to_vec(), b'z', b'w', b'a')),
        1 => Just((b"ab".to_vec(), b'a', b'c', b'n')),
        3 => random,
    ]
}

/// Byte strings that exercise the stuffing: the prefix, parts of it, the markers.
fn stuffing_tokens(prefix: &[u8], begin: u8, end: u8, nop: u8) -> Vec<Vec<u8>> {
    let mut tokens = vec![vec![begin], vec![end], vec![nop], prefix.to_vec()];
    for k in 1..prefix.len() {
        tokens.push(prefix[..k].to_vec());
        tokens.push(prefix[k..].to_vec());
    }
    for marker in [begin, end, nop] {
        let mut t = prefix.to_vec();
        t.push(marker);
        tokens.push(t);
    }
    tokens
}

/// Frames for COBS: many zeros (single and paired, for ZPE) and non-zero runs around the block
/// sizes (30/31 for ZPE pairs, 222/223 for ZPE blocks, 253/254 for standard blocks).
fn cobs_frames() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let run = (
        select(vec![
            29usize, 30, 31, 32, 221, 222, 223, 224, 253, 254, 255, 256,
        ]),
        1u8..=255,
    )
        .prop_map(|(n, b)| vec![b; n]);
    let token = prop_oneof![
        4 => Just(vec![0u8]),
        2 => Just(vec![0u8, 0]),
        4 => (1u8..=255).prop_map(|b| vec![b]),
        1 => run,
    ];
    vec(vec(token, 0..10).prop_map(|t| t.concat()), 0..6)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn length_prefixed_frames_come_back_whatever_the_wire_is_cut_at(
        field in select(FIELDS.to_vec()),
        offset in 0usize..=3,
        adjustment in -4i64..=4,
        counts_header: bool,
        tight: bool,
        frames in vec(prop_oneof![4 => vec(any::<u8>(), 0..40), 1 => vec(any::<u8>(), 250..300)], 0..8),
        cuts in cuts(),
    ) {
        let max = if tight { longest(&frames).saturating_sub(offset) } else { LengthPrefixed::DEFAULT_MAX };
        let make = || {
            LengthPrefixed::new(field)
                .offset(offset)
                .adjustment(adjustment)
                .counts_header(counts_header)
                .max_length(max)
        };
        let enc = encode_each(&mut make(), &frames);
        // Which frames the format can carry.
        let carried: Vec<Bytes> = frames
            .iter()
            .filter(|f| {
                let Some(body) = f.len().checked_sub(offset) else { return false };
                let width = field.width().unwrap_or(1);
                let header = if counts_header { offset + width } else { 0 };
                let value = (body + header) as i128 + i128::from(adjustment);
                body <= max && value >= 0 && value <= i128::from(field.max_value())
            })
            .map(|f| Bytes::copy_from_slice(f))
            .collect();
        prop_assert_eq!(hexes(&enc.accepted), hexes(&carried));
        for (frame, e) in &enc.rejected {
            prop_assert!(
                matches!(e, FrameError::LengthFieldOverflow { .. } | FrameError::Unencodable { .. }),
                "{} refused with {:?}", common::hex(frame), e
            );
        }
        if let Some(width) = field.width() {
            let payload: usize = enc.accepted.iter().map(Bytes::len).sum();
            prop_assert_eq!(enc.wire.len(), payload + width * enc.accepted.len());
        }
        decodes_to(&mut make(), &enc.wire, &cuts, &enc.accepted)?;
    }

    #[test]
    fn lines_come_back_whatever_the_wire_is_cut_at(
        crlf: bool,
        tight: bool,
        frames in frames_of(vec![b"\r".to_vec(), b"\n".to_vec(), b"\r\n".to_vec(), b"a".to_vec(), b" bc".to_vec()], 12),
        cuts in cuts(),
    ) {
        let max = if tight { longest(&frames) } else { Line::DEFAULT_MAX };
        let make = || if crlf { Line::crlf() } else { Line::lf() }.max_length(max);
        let enc = encode_each(&mut make(), &frames);
        let carried: Vec<Bytes> = frames
            .iter()
            .filter(|f| !f.contains(&b'\n'))
            .map(|f| Bytes::copy_from_slice(f))
            .collect();
        prop_assert_eq!(hexes(&enc.accepted), hexes(&carried));
        decodes_to(&mut make(), &enc.wire, &cuts, &enc.accepted)?;
    }

    #[test]
    fn delimited_frames_come_back_whatever_the_wire_is_cut_at(
        (delimiter, frames) in prop_oneof![
            Just(b"\r\n.\r\n".to_vec()),
            vec(select(b"ab.\r\n".to_vec()), 1..=6),
        ].prop_flat_map(|d| {
            let mut tokens = vec![d.clone(), b"x".to_vec(), b"\r\n".to_vec()];
            for k in 1..d.len() {
                tokens.push(d[..k].to_vec());
                tokens.push(d[k..].to_vec());
            }
            tokens.extend(d.iter().map(|&b| vec![b]));
            (Just(d), frames_of(tokens, 10))
        }),
        keep: bool,
        tight: bool,
        cuts in cuts(),
    ) {
        let max = if tight { longest(&frames) } else { Delimiter::DEFAULT_MAX };
        let make = || Delimiter::new(&delimiter).unwrap().keep_delimiter(keep).max_length(max);
        let enc = encode_each(&mut make(), &frames);
        // A frame can be sent if the delimiter first appears right after its body; with `keep`
        // the frame may already end with the delimiter, and is received with it.
        let mut carried = Vec::new();
        for frame in &frames {
            let body = match frame.strip_suffix(&delimiter[..]) {
                Some(body) if keep => body,
                _ => &frame[..],
            };
            let wire = [body, &delimiter].concat();
            if find(&wire, &delimiter) == Some(body.len()) {
                carried.push(if keep { Bytes::from(wire) } else { Bytes::copy_from_slice(body) });
            }
        }
        prop_assert_eq!(enc.accepted.len(), carried.len());
        decodes_to(&mut make(), &enc.wire, &cuts, &carried)?;
    }

    #[test]
    fn stuffed_frames_come_back_whatever_the_wire_is_cut_at(
        ((prefix, begin, end, nop), frames) in stuffing_params().prop_flat_map(|(p, b, e, n)| {
            let tokens = stuffing_tokens(&p, b, e, n);
            (Just((p, b, e, n)), frames_of(tokens, 12))
        }),
        tight: bool,
        cuts in cuts(),
    ) {
        let max = if tight { longest(&frames) } else { Stuffing::DEFAULT_MAX };
        let make = || Stuffing::new(&prefix, begin, end, nop).unwrap().max_length(max);
        let enc = encode_each(&mut make(), &frames);
        prop_assert!(enc.rejected.is_empty(), "refused: {:?}", enc.rejected);
        decodes_to(&mut make(), &enc.wire, &cuts, &enc.accepted)?;
    }

    #[test]
    fn cobs_frames_come_back_whatever_the_wire_is_cut_at(
        zpe: bool,
        tight: bool,
        frames in cobs_frames(),
        cuts in cuts(),
    ) {
        let max = if tight { longest(&frames) } else { Cobs::DEFAULT_MAX };
        let make = || if zpe { Cobs::zpe() } else { Cobs::new() }.max_length(max);
        let enc = encode_each(&mut make(), &frames);
        prop_assert!(enc.rejected.is_empty(), "refused: {:?}", enc.rejected);
        // The only zeros on the wire are the delimiters.
        prop_assert_eq!(enc.wire.iter().filter(|&&b| b == 0).count(), frames.len());
        decodes_to(&mut make(), &enc.wire, &cuts, &enc.accepted)?;
    }

    #[test]
    fn netstrings_come_back_whatever_the_wire_is_cut_at(
        frames in vec(
            prop_oneof![
                4 => vec(prop_oneof![select(b"0123456789:,".to_vec()), any::<u8>()], 0..30),
                1 => vec(any::<u8>(), 990..1010),
            ],
            0..8,
        ),
        tight: bool,
        cuts in cuts(),
    ) {
        let max = if tight { longest(&frames) } else { Netstring::DEFAULT_MAX };
        let make = || Netstring::new().max_length(max);
        let enc = encode_each(&mut make(), &frames);
        prop_assert!(enc.rejected.is_empty(), "refused: {:?}", enc.rejected);
        decodes_to(&mut make(), &enc.wire, &cuts, &enc.accepted)?;
    }

    #[test]
    fn records_come_back_whatever_the_wire_is_cut_at(
        (n, frames) in (1usize..=9).prop_flat_map(|n| {
            let frame = prop_oneof![4 => vec(any::<u8>(), n), 1 => vec(any::<u8>(), 0..=n + 2)];
            (Just(n), vec(frame, 0..8))
        }),
        cuts in cuts(),
    ) {
        let enc = encode_each(&mut Chunk::new(n), &frames);
        let carried: Vec<Bytes> = frames
            .iter()
            .filter(|f| f.len() == n)
            .map(|f| Bytes::copy_from_slice(f))
            .collect();
        prop_assert_eq!(hexes(&enc.accepted), hexes(&carried));
        decodes_to(&mut Chunk::new(n), &enc.wire, &cuts, &enc.accepted)?;
    }

    #[test]
    fn piecewise_records_come_back_in_pieces_that_never_span_two_records(
        (n, records) in (1usize..=9).prop_flat_map(|n| (Just(n), vec(vec(any::<u8>(), n), 0..8))),
        cuts in cuts(),
    ) {
        let enc = encode_each(&mut Chunk::new(n).piecewise(true), &records);
        prop_assert_eq!(enc.accepted.len(), records.len());
        let mut framer = Chunk::new(n).piecewise(true);
        let mut buf = BytesMut::new();
        let (mut got, mut current) = (Vec::new(), Vec::new());
        for piece in pieces(&enc.wire, &cuts) {
            buf.extend_from_slice(piece);
            while let Some(frame) = framer.frameify(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                prop_assert!(!frame.is_empty());
                current.extend_from_slice(&frame);
                prop_assert!(current.len() <= n, "a piece spans two records");
                prop_assert_eq!(framer.remaining(), if current.len() == n { n } else { n - current.len() });
                if current.len() == n {
                    got.push(std::mem::take(&mut current));
                }
            }
        }
        prop_assert!(pull_eof(&mut framer, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?.is_empty());
        prop_assert!(current.is_empty() && buf.is_empty());
        prop_assert_eq!(hexes(&got), hexes(&records));
    }

    #[test]
    fn identity_frames_concatenate_to_the_input(
        max in prop_oneof![Just(Identity::DEFAULT_MAX), 1usize..=20],
        frames in vec(vec(any::<u8>(), 0..50), 0..8),
        cuts in cuts(),
    ) {
        let enc = encode_each(&mut Identity::new().max_length(max), &frames);
        prop_assert_eq!(&enc.wire[..], &frames.concat()[..]);
        let (got, rest) = feed(&mut Identity::new().max_length(max), pieces(&enc.wire, &cuts))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(got.iter().all(|f| !f.is_empty() && f.len() <= max));
        prop_assert_eq!(got.concat(), frames.concat());
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn arbitrary_bytes_give_the_same_lines_and_delimited_frames_however_they_are_cut(
        input in vec(select(b"ab\r\n.".to_vec()), 0..200),
        which in 0usize..4,
        discard: bool,
        max in 0usize..12,
        cuts in cuts(),
    ) {
        // Also with discard_oversized: an oversized frame is skipped the same way whether it
        // arrives at once (terminator in the buffer) or in pieces (discarding until it comes).
        match which {
            0 => cut_independent(|| Line::crlf().max_length(max).discard_oversized(discard), &input, &cuts)?,
            1 => cut_independent(|| Line::lf().max_length(max).discard_oversized(discard), &input, &cuts)?,
            2 => cut_independent(
                || Delimiter::new(b"\r\n.\r\n").unwrap().max_length(max).discard_oversized(discard),
                &input,
                &cuts,
            )?,
            _ => cut_independent(
                || {
                    Delimiter::new(b"a.a")
                        .unwrap()
                        .keep_delimiter(true)
                        .max_length(max)
                        .discard_oversized(discard)
                },
                &input,
                &cuts,
            )?,
        }
    }

    #[test]
    fn arbitrary_bytes_give_the_same_length_prefixed_frames_and_netstrings_however_they_are_cut(
        input in vec(prop_oneof![select(b"\x00\x01\x02\x03\x80\xff019:,".to_vec()), any::<u8>()], 0..200),
        field in select(FIELDS.to_vec()),
        offset in 0usize..=2,
        adjustment in -3i64..=3,
        counts_header: bool,
        max in 0usize..300,
        netstring: bool,
        cuts in cuts(),
    ) {
        if netstring {
            cut_independent(|| Netstring::new().max_length(max), &input, &cuts)?;
        } else {
            let make = || {
                LengthPrefixed::new(field)
                    .offset(offset)
                    .adjustment(adjustment)
                    .counts_header(counts_header)
                    .max_length(max)
            };
            cut_independent(make, &input, &cuts)?;
        }
    }

    #[test]
    fn arbitrary_bytes_give_the_same_cobs_and_stuffed_frames_however_they_are_cut(
        input in vec(select(b"\x00\x00\x01\x02\x03\x05\xe0\xe1\xe3\xfe\xffzzzwa".to_vec()), 0..300),
        which in 0usize..4,
        max in 0usize..40,
        cuts in cuts(),
    ) {
        match which {
            0 => cut_independent(|| Cobs::new().max_length(max), &input, &cuts)?,
            1 => cut_independent(|| Cobs::zpe().max_length(max), &input, &cuts)?,
            2 => cut_independent(|| Stuffing::default().max_length(max), &input, &cuts)?,
            _ => cut_independent(
                || Stuffing::new(b"zzz", b'z', b'w', b'a').unwrap().max_length(max),
                &input,
                &cuts,
            )?,
        }
    }
}
