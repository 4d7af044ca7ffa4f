//! Drivers shared by the tests: feed a framer or a decoder the wire in pieces, as a socket
//! would, and log every frame, skip and error.

#![allow(dead_code)] // Each test file uses its own share of these.

use std::fmt::Display;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use tendril_core::{Framer, Outgoing};
use tokio_util::codec::Decoder;

/// One thing that came out of a framer or a decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Frame(Vec<u8>),
    /// A recoverable error: a frame was skipped and decoding went on.
    Skipped(String),
    /// The error that ended decoding.
    Error(String),
}

/// The wire cut at the given points; no empty pieces (a read of nothing is the end of input).
pub fn pieces<'a>(wire: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
    at.push(0);
    at.push(wire.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &wire[w[0]..w[1]]).collect()
}

/// Everything `framer` makes of `pieces` arriving one after another, then the end of input;
/// goes on after recoverable errors, as a `Tendril` does.
pub fn drive_framer<F>(framer: &mut F, pieces: &[&[u8]]) -> Vec<Step>
where
    F: Framer + ?Sized,
    F::Frame: AsRef<[u8]>,
{
    let mut buf = BytesMut::new();
    let mut log = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match framer.frameify(&mut buf) {
                Ok(Some(frame)) => log.push(Step::Frame(frame.as_ref().to_vec())),
                Ok(None) => break,
                Err(e) if e.is_recoverable() => log.push(Step::Skipped(e.to_string())),
                Err(e) => {
                    log.push(Step::Error(e.to_string()));
                    return log;
                }
            }
        }
    }
    loop {
        match framer.frameify_eof(&mut buf) {
            Ok(Some(frame)) => log.push(Step::Frame(frame.as_ref().to_vec())),
            Ok(None) => return log,
            Err(e) if e.is_recoverable() => log.push(Step::Skipped(e.to_string())),
            Err(e) => {
                log.push(Step::Error(e.to_string()));
                return log;
            }
        }
    }
}

/// Everything `decoder` makes of `pieces`, then the end of input, called as `Framed` calls it;
/// an error for which `go_on` says `true` is logged as a skip and decoding goes on.
pub fn drive_decoder<D>(
    decoder: &mut D,
    pieces: &[&[u8]],
    go_on: impl Fn(&D::Error) -> bool,
) -> Vec<Step>
where
    D: Decoder,
    D::Item: AsRef<[u8]>,
    D::Error: Display,
{
    let mut buf = BytesMut::new();
    let mut log = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => log.push(Step::Frame(frame.as_ref().to_vec())),
                Ok(None) => break,
                Err(e) if go_on(&e) => log.push(Step::Skipped(e.to_string())),
                Err(e) => {
                    log.push(Step::Error(e.to_string()));
                    return log;
                }
            }
        }
    }
    loop {
        match decoder.decode_eof(&mut buf) {
            Ok(Some(frame)) => log.push(Step::Frame(frame.as_ref().to_vec())),
            Ok(None) => return log,
            Err(e) if go_on(&e) => log.push(Step::Skipped(e.to_string())),
            Err(e) => {
                log.push(Step::Error(e.to_string()));
                return log;
            }
        }
    }
}

/// The log without its skips.
pub fn without_skips(log: &[Step]) -> Vec<Step> {
    log.iter()
        .filter(|s| !matches!(s, Step::Skipped(_)))
        .cloned()
        .collect()
}

/// How many frames were skipped.
pub fn skips(log: &[Step]) -> u64 {
    log.iter().filter(|s| matches!(s, Step::Skipped(_))).count() as u64
}

/// Just the frames.
pub fn frames(log: &[Step]) -> Vec<Vec<u8>> {
    log.iter()
        .filter_map(|s| match s {
            Step::Frame(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

/// The frames, and whether decoding ended in an error: what two implementations whose error
/// messages differ can be compared by.
pub fn fate(log: &[Step]) -> (Vec<Vec<u8>>, bool) {
    (frames(log), matches!(log.last(), Some(Step::Error(_))))
}

/// The wire form of each frame `framer` accepts, back to back (refused frames are left out).
pub fn encode<F: Framer<Frame = Bytes> + ?Sized>(framer: &mut F, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Outgoing::new();
    for frame in frames {
        let _ = framer.streamify(Bytes::copy_from_slice(frame), &mut out);
    }
    out.take_all().to_vec()
}

/// Frames made of byte strings that matter to some framer (terminators, markers, zeros,
/// digits) and arbitrary bytes.
pub fn frames_of(
    tokens: &'static [&'static [u8]],
    max: usize,
) -> impl Strategy<Value = Vec<Vec<u8>>> {
    let token = prop_oneof![
        4 => select(tokens).prop_map(<[u8]>::to_vec),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ];
    vec(vec(token, 0..max).prop_map(|t| t.concat()), 0..8)
}

/// Bytes that matter to one framer or another.
pub const TOKENS: &[&[u8]] = &[
    b"a",
    b"b",
    b"z",
    b"\n",
    b"\r",
    b"\r\n",
    b"\r\n.\r\n",
    b",",
    b":",
    b"0",
    b"5",
    b"\x00",
    b"\xff",
    b"\xfe",
    b"\xff\xff\xff\xff",
    b"zzz",
    b"aba",
];

/// Where the wire is cut.
pub fn cuts() -> impl Strategy<Value = Vec<Index>> {
    vec(any::<Index>(), 0..12)
}
