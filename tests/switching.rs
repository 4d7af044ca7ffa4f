//! Switching the receive framer between frames, as protocols like SMTP do: the bytes already
//! buffered go through the framer switched in, and nothing is lost or taken twice.

mod common;

use std::fmt;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use tendril_core::{
    BoxFramer, Chunk, Cobs, Delimiter, FrameError, Framer, LengthPrefixed, Line, Netstring,
    Outgoing, Stuffing,
};

use common::{bytewise, hex, split_at};

const SESSION: &[u8] = b"DATA\r\n12345rest\r\nnext\r\n";

#[test]
fn switching_to_chunk_after_data_keeps_buffered_bytes() {
    let mut buf = BytesMut::from(SESSION);
    let (mut line, mut chunk) = (Line::crlf(), Chunk::new(5));
    assert_eq!(line.frameify(&mut buf).unwrap().unwrap(), "DATA");
    chunk.reset();
    assert_eq!(chunk.frameify(&mut buf).unwrap().unwrap(), "12345");
    line.reset();
    assert_eq!(line.frameify(&mut buf).unwrap().unwrap(), "rest");
    assert_eq!(line.frameify(&mut buf).unwrap().unwrap(), "next");
    assert_eq!(line.frameify(&mut buf).unwrap(), None);
    assert!(buf.is_empty());
}

/// The receive side of a small protocol: lines; after `DATA` one 5-byte record, then lines.
fn line_chunk_line<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Bytes>, BytesMut) {
    let (mut line, mut chunk) = (Line::crlf(), Chunk::new(5));
    let mut in_chunk = false;
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let frame = if in_chunk {
                chunk.frameify(&mut buf)
            } else {
                line.frameify(&mut buf)
            };
            let Some(frame) = frame.unwrap() else { break };
            if in_chunk {
                in_chunk = false;
                line.reset();
            } else if frame == "DATA" {
                in_chunk = true;
                chunk.reset();
            }
            frames.push(frame);
        }
    }
    (frames, buf)
}

#[test]
fn switching_between_line_and_chunk_works_byte_by_byte() {
    let (frames, rest) = line_chunk_line(bytewise(SESSION));
    assert_eq!(frames, ["DATA", "12345", "rest", "next"]);
    assert!(rest.is_empty());
}

#[test]
fn switching_between_line_and_chunk_works_wherever_the_input_is_cut() {
    for a in 0..=SESSION.len() {
        for b in a..=SESSION.len() {
            let (frames, rest) = line_chunk_line(split_at(SESSION, &[a, b]));
            assert_eq!(frames, ["DATA", "12345", "rest", "next"], "cut at {a}, {b}");
            assert!(rest.is_empty());
        }
    }
}

#[test]
fn a_chunk_that_looks_like_a_line_ending_is_taken_as_data() {
    // The record holds "\r\n" and more: the line framer, switched back in, must not have
    // remembered anything about those bytes.
    let (frames, rest) = line_chunk_line([&b"DATA\r\n\r\nab\nX\r\n"[..]]);
    assert_eq!(frames, ["DATA", "\r\nab\n", "X"]);
    assert!(rest.is_empty());
}

/// An SMTP-like receive side with one boxed framer: command lines; `DATA` switches to a
/// message ended by `\r\n.\r\n`; `BDAT n` to one record of n bytes; both then back to lines.
fn smtp<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<String>, FrameError> {
    let mut recv: BoxFramer<Bytes> = Line::crlf().boxed();
    let mut in_command = true;
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut on_frame = |frame: Bytes, recv: &mut BoxFramer<Bytes>| {
        let text = String::from_utf8_lossy(&frame).into_owned();
        let next: Option<BoxFramer<Bytes>> = if !in_command {
            Some(Line::crlf().boxed())
        } else if text == "DATA" {
            Some(Delimiter::new(b"\r\n.\r\n").unwrap().boxed())
        } else if let Some(n) = text.strip_prefix("BDAT ") {
            Some(Chunk::new(n.parse().unwrap()).boxed())
        } else {
            None
        };
        if let Some(mut next) = next {
            next.reset();
            *recv = next;
            in_command = !in_command;
        }
        frames.push(text);
    };
    for piece in pieces {
        buf.extend_from_slice(piece);
        while let Some(frame) = recv.frameify(&mut buf)? {
            on_frame(frame, &mut recv);
        }
    }
    while let Some(frame) = recv.frameify_eof(&mut buf)? {
        on_frame(frame, &mut recv);
    }
    assert!(buf.is_empty(), "left over: {}", hex(&buf));
    Ok(frames)
}

const SMTP: &[u8] = b"EHLO there\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n..dot\r\n.\r\nBDAT 7\r\n\r\n.\r\n\r\nQUIT\r\n";
const SMTP_FRAMES: [&str; 6] = [
    "EHLO there",
    "DATA",
    "Subject: hi\r\n\r\nbody\r\n..dot",
    "BDAT 7",
    "\r\n.\r\n\r\n",
    "QUIT",
];

#[test]
fn an_smtp_session_switches_line_delimiter_line_chunk_line_in_one_box() {
    assert_eq!(smtp([SMTP]).unwrap(), SMTP_FRAMES);
    assert_eq!(smtp(bytewise(SMTP)).unwrap(), SMTP_FRAMES);
}

#[test]
fn a_boxed_framer_can_be_replaced_by_one_of_another_type() {
    let mut buf = BytesMut::from(SESSION);
    let mut recv: BoxFramer<Bytes> = Line::crlf().boxed();
    assert_eq!(recv.frameify(&mut buf).unwrap().unwrap(), "DATA");
    recv = Chunk::new(5).boxed();
    recv.reset();
    assert_eq!(recv.frameify(&mut buf).unwrap().unwrap(), "12345");
    recv = Line::crlf().boxed();
    recv.reset();
    assert_eq!(recv.frameify(&mut buf).unwrap().unwrap(), "rest");
    assert_eq!(recv.frameify(&mut buf).unwrap().unwrap(), "next");
    assert!(recv.frameify(&mut buf).unwrap().is_none());
    assert!(buf.is_empty());

    // The send side of a boxed framer writes the boxed framer's format.
    let mut out = Outgoing::new();
    recv.streamify("250 OK".into(), &mut out).unwrap();
    recv = Netstring::new().boxed();
    recv.streamify("hi".into(), &mut out).unwrap();
    assert_eq!(out.take_all(), "250 OK\r\n2:hi,");
}

#[test]
fn every_framer_takes_over_a_buffer_left_by_another() {
    // Each framer's wire form of "frame", preceded and followed by a line, in one buffer.
    type Make = fn() -> BoxFramer<Bytes>;
    let framers: Vec<(&str, Make)> = vec![
        ("chunk", || Chunk::new(5).boxed()),
        ("lf", || Line::lf().boxed()),
        ("delimiter", || Delimiter::new(b"||").unwrap().boxed()),
        ("u16be", || LengthPrefixed::u16_be().boxed()),
        ("varint+offset", || {
            LengthPrefixed::varint().offset(1).boxed()
        }),
        ("netstring", || Netstring::new().boxed()),
        ("stuffing", || Stuffing::default().boxed()),
        ("cobs", || Cobs::new().boxed()),
        ("zpe", || Cobs::zpe().boxed()),
    ];
    for (name, make) in framers {
        let mut wire = BytesMut::from(&b"before\r\n"[..]);
        let mut out = Outgoing::new();
        make().streamify("frame".into(), &mut out).unwrap();
        wire.extend_from_slice(&out.take_all());
        wire.extend_from_slice(b"after\r\n");
        for pieces in [vec![&wire[..]], bytewise(&wire)] {
            let mut recv: BoxFramer<Bytes> = Line::crlf().boxed();
            let mut buf = BytesMut::new();
            let mut frames = Vec::new();
            for piece in pieces {
                buf.extend_from_slice(piece);
                while let Some(frame) = recv.frameify(&mut buf).unwrap() {
                    recv = if frames.len() == 1 {
                        Line::crlf().boxed()
                    } else {
                        make()
                    };
                    recv.reset();
                    frames.push(frame);
                }
            }
            assert_eq!(frames, ["before", "frame", "after"], "{name}");
            assert!(buf.is_empty(), "{name}");
        }
    }
}

#[test]
fn a_piecewise_record_streams_through_before_switching_back() {
    let wire = b"BDAT 10\r\n0123456789QUIT\r\n";
    let mut line = Line::crlf();
    let mut chunk = Chunk::new(10).piecewise(true);
    let mut in_chunk = false;
    let mut buf = BytesMut::new();
    let (mut body, mut lines) = (Vec::new(), Vec::new());
    for piece in wire.chunks(3) {
        buf.extend_from_slice(piece);
        loop {
            if in_chunk {
                let Some(part) = chunk.frameify(&mut buf).unwrap() else {
                    break;
                };
                assert!(part.len() <= 3, "a piece bigger than what arrived");
                body.extend_from_slice(&part);
                if chunk.remaining() == chunk.record_len() {
                    in_chunk = false;
                    line.reset();
                }
            } else {
                let Some(text) = line.frameify(&mut buf).unwrap() else {
                    break;
                };
                if text.starts_with(b"BDAT") {
                    in_chunk = true;
                    chunk.reset();
                }
                lines.push(text);
            }
        }
    }
    assert_eq!(body, b"0123456789");
    assert_eq!(lines, ["BDAT 10", "QUIT"]);
    assert!(buf.is_empty());
}

#[test]
fn resetting_a_framer_forgets_a_half_received_frame() {
    // Stuffing in the middle of a frame, COBS and Line with a partial scan: after reset they
    // start over on whatever buffer they are given.
    let mut stuffing = Stuffing::new(b"zzz", b'z', b'w', b'a').unwrap();
    let mut buf = BytesMut::from(&b"zzzzhalf"[..]);
    assert!(stuffing.frameify(&mut buf).unwrap().is_none());
    stuffing.reset();
    let mut buf = BytesMut::from(&b"junkzzzzwholezzzw"[..]);
    assert_eq!(stuffing.frameify(&mut buf).unwrap().unwrap(), "whole");

    let mut line = Line::crlf();
    let mut buf = BytesMut::from(&b"a long partial line"[..]);
    assert!(line.frameify(&mut buf).unwrap().is_none());
    line.reset();
    let mut buf = BytesMut::from(&b"x\r\n"[..]);
    assert_eq!(line.frameify(&mut buf).unwrap().unwrap(), "x");

    let mut cobs = Cobs::new();
    let mut buf = BytesMut::from(&[0x05, 1, 2, 3][..]);
    assert!(cobs.frameify(&mut buf).unwrap().is_none());
    cobs.reset();
    let mut buf = BytesMut::from(&[0x02, b'x', 0x00][..]);
    assert_eq!(cobs.frameify(&mut buf).unwrap().unwrap(), "x");

    let mut piecewise = Chunk::new(4).piecewise(true);
    let mut buf = BytesMut::from(&b"ab"[..]);
    assert_eq!(piecewise.frameify(&mut buf).unwrap().unwrap(), "ab");
    assert_eq!(piecewise.remaining(), 2);
    piecewise.reset();
    assert_eq!(piecewise.remaining(), 4);
}

/// Commands of a toy protocol, parsed from lines.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Helo(String),
    Data,
    Quit,
}

/// A line that is not a command.
#[derive(Debug)]
struct UnknownCommand(String);

impl fmt::Display for UnknownCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown command {:?}", self.0)
    }
}

impl std::error::Error for UnknownCommand {}

fn parse(line: Bytes) -> Result<Command, FrameError> {
    let text = std::str::from_utf8(&line).map_err(FrameError::custom)?;
    match text.split_once(' ') {
        Some(("HELO", name)) => Ok(Command::Helo(name.into())),
        None if text == "DATA" => Ok(Command::Data),
        None if text == "QUIT" => Ok(Command::Quit),
        _ => Err(FrameError::custom(UnknownCommand(text.into()))),
    }
}

fn unparse(command: Command) -> Result<Bytes, FrameError> {
    Ok(match command {
        Command::Helo(name) if name.contains(' ') => {
            return Err(FrameError::custom("a HELO name has no spaces"))
        }
        Command::Helo(name) => format!("HELO {name}").into(),
        Command::Data => "DATA".into(),
        Command::Quit => "QUIT".into(),
    })
}

#[test]
fn a_mapped_framer_delivers_typed_frames_and_switches_like_any_other() {
    let mut commands = Line::crlf().map(parse, unparse);
    let mut body = Delimiter::new(b"\r\n.\r\n").unwrap();
    let mut buf = BytesMut::from(&b"HELO me\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n"[..]);
    assert_eq!(
        commands.frameify(&mut buf).unwrap(),
        Some(Command::Helo("me".into()))
    );
    assert_eq!(commands.frameify(&mut buf).unwrap(), Some(Command::Data));
    body.reset();
    assert_eq!(body.frameify(&mut buf).unwrap().unwrap(), "hello");
    commands.reset();
    assert_eq!(commands.frameify(&mut buf).unwrap(), Some(Command::Quit));
    assert_eq!(commands.frameify_eof(&mut buf).unwrap(), None);
    assert!(buf.is_empty());

    // Sending goes through the encoder and the line framer.
    let mut out = Outgoing::new();
    commands
        .streamify(Command::Helo("you".into()), &mut out)
        .unwrap();
    commands.streamify(Command::Quit, &mut out).unwrap();
    assert_eq!(out.take_all(), "HELO you\r\nQUIT\r\n");

    // The inner framer is still reachable, e.g. to change its limit.
    let stricter = commands.get_ref().clone().max_length(4);
    *commands.get_mut() = stricter;
    let mut buf = BytesMut::from(&b"HELO everyone\r\n"[..]);
    assert!(matches!(
        commands.frameify(&mut buf),
        Err(FrameError::TooLong { max: 4, .. })
    ));
}

#[test]
fn a_custom_error_from_a_mapped_framer_keeps_its_message_and_source() {
    let mut commands = Line::crlf().map(parse, unparse);
    let mut buf = BytesMut::from(&b"EHLO me\r\nQUIT\r\n"[..]);
    let err = commands.frameify(&mut buf).unwrap_err();
    assert!(matches!(err, FrameError::Custom(_)));
    assert!(!err.is_recoverable());
    assert_eq!(err.to_string(), "unknown command \"EHLO me\"");
    let source = std::error::Error::source(&err).expect("a custom error has a source");
    let unknown = source
        .downcast_ref::<UnknownCommand>()
        .expect("the source is the application's error");
    assert_eq!(unknown.0, "EHLO me");
    // The bad line was consumed; the next one parses.
    assert_eq!(commands.frameify(&mut buf).unwrap(), Some(Command::Quit));

    // Errors from the wrapped framer come through unchanged, and so do encoding errors.
    let mut buf = BytesMut::from(&b"\xff\xfe\r\n"[..]);
    let err = commands.frameify(&mut buf).unwrap_err();
    assert!(matches!(err, FrameError::Custom(_)));
    assert!(err.to_string().contains("utf-8"), "{err}");
    let mut out = Outgoing::new();
    let err = commands
        .streamify(Command::Helo("two words".into()), &mut out)
        .unwrap_err();
    assert_eq!(err.to_string(), "a HELO name has no spaces");
    assert!(out.is_empty());
}

#[test]
fn a_mapped_framer_can_be_boxed_and_switched_with_raw_framers_behind_one_type() {
    // Typed frames from two different wire formats behind one boxed framer.
    let number = |frame: Bytes| -> Result<u32, FrameError> {
        std::str::from_utf8(&frame)
            .map_err(FrameError::custom)?
            .parse()
            .map_err(FrameError::custom)
    };
    let text = |n: u32| -> Result<Bytes, FrameError> { Ok(n.to_string().into()) };
    let mut recv: BoxFramer<u32> = Line::lf().map(number, text).boxed();
    let mut buf = BytesMut::from(&b"12\n3:345,7\n"[..]);
    assert_eq!(recv.frameify(&mut buf).unwrap(), Some(12));
    recv = Netstring::new().map(number, text).boxed();
    recv.reset();
    assert_eq!(recv.frameify(&mut buf).unwrap(), Some(345));
    recv = Line::lf().map(number, text).boxed();
    recv.reset();
    assert_eq!(recv.frameify(&mut buf).unwrap(), Some(7));
    assert!(buf.is_empty());
    let mut buf = BytesMut::from(&b"x\n"[..]);
    let err = recv.frameify(&mut buf).unwrap_err();
    assert_eq!(err.to_string(), "invalid digit found in string");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn an_smtp_session_gives_the_same_frames_however_it_is_cut(cuts in vec(any::<Index>(), 0..10)) {
        let at: Vec<usize> = cuts.iter().map(|i| i.index(SMTP.len() + 1)).collect();
        let frames = smtp(split_at(SMTP, &at)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(frames, SMTP_FRAMES);
    }
}
