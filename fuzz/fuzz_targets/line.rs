//! `Line`: CRLF or LF, any maximum (small or the default), discard-oversized on or off.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tendril_core::Line;
use tendril_core_fuzz::{check, check_slices, Checks, Limit, Stream};

#[derive(Arbitrary, Debug)]
struct Input {
    crlf: bool,
    max: Limit,
    discard: bool,
    /// Map the data into `a`, `\r`, `\n` so that terminators are frequent.
    narrow: bool,
    stream: Stream,
}

fuzz_target!(|input: Input| {
    let Input {
        crlf,
        max: limit,
        discard,
        narrow,
        mut stream,
    } = input;
    if limit.skip_known() {
        return;
    }
    if narrow {
        for b in &mut stream.data {
            *b = b"a\r\n"[usize::from(*b % 3)];
        }
    }
    let make = || {
        let line = if crlf { Line::crlf() } else { Line::lf() };
        let line = match limit.get() {
            Some(max) => line.max_length(max),
            None => line,
        };
        line.discard_oversized(discard)
    };
    let max = limit.or(Line::DEFAULT_MAX);
    // A line of `max` bytes, plus its `\r` in CRLF mode, may wait for its `\n`.
    let mut checks = Checks::new(max.saturating_add(usize::from(crlf)), max);
    checks.keeps_pending = !discard;
    checks.chunking_independent = true;
    // The call consumed (with discard, skipped bytes and) the line and its terminator: `\n`,
    // in CRLF mode `\r\n` or a `\n` not after `\r`; at the end, nothing (or `\r` in CRLF
    // mode).
    let on_frame = |frame: &Bytes, source: &[u8], eof: bool| {
        assert!(!frame.contains(&b'\n'), "a line frame contains '\\n'");
        let cr = frame.ends_with(b"\r");
        let ends: &[&[u8]] = match (crlf, eof) {
            (false, _) => &[b"\n", b""],
            (true, _) if cr => &[b"\r\n", b"\r"],
            (true, _) => &[b"\r\n", b"\n", b"\r", b""],
        };
        let ok = ends.iter().any(|end| {
            let taken = [&frame[..], end].concat();
            let unterminated = !end.ends_with(b"\n");
            (!unterminated || eof)
                && if discard {
                    source.ends_with(&taken)
                } else {
                    source == taken
                }
        });
        assert!(ok, "line {frame:?} taken from {source:?} (eof: {eof})");
    };
    checks.on_frame = &on_frame;
    let on_wire = |frame: &Bytes, wire: &[u8]| {
        let end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        assert!(
            wire.len() == frame.len() + end.len() && wire.starts_with(frame) && wire.ends_with(end),
            "line {frame:?} sent as {wire:?}"
        );
    };
    checks.on_wire = &on_wire;
    check(make, &stream, &checks);
    if !discard {
        // Borrowed reading has no discard mode.
        check_slices(make, &stream);
    }
});
