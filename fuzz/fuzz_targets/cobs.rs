//! `Cobs`: standard or ZPE, any maximum, discard-oversized on or off. Besides the shared checks,
//! each received frame is compared with a reference decoder written from the format description,
//! and each encoding must be zero-free but for its final delimiter.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tendril_core::Cobs;
use tendril_core_fuzz::{check, Checks, Limit, Stream};

#[derive(Arbitrary, Debug)]
struct Input {
    zpe: bool,
    max: Limit,
    discard: bool,
    stream: Stream,
}

/// Decode one COBS (or COBS/ZPE) frame, without its `0x00` delimiter, as the docs describe it.
fn reference_decode(enc: &[u8], zpe: bool) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut last_zeros = 0;
    while i < enc.len() {
        let code = usize::from(enc[i]);
        i += 1;
        let (data, zeros) = match (zpe, code) {
            (false, 0xff) => (254, 0),
            (true, 0xe0) => (223, 0),
            (true, 0xe1..) => (code - 0xe1, 2),
            _ => (code - 1, 1),
        };
        out.extend_from_slice(enc.get(i..i + data)?);
        i += data;
        out.resize(out.len() + zeros, 0);
        last_zeros = zeros;
    }
    // The final implied zero is not part of the frame.
    if last_zeros > 0 {
        out.pop();
    }
    Some(out)
}

fuzz_target!(|input: Input| {
    let Input {
        zpe,
        max: limit,
        discard,
        stream,
    } = input;
    if limit.skip_known() {
        return;
    }
    let make = || {
        let framer = if zpe { Cobs::zpe() } else { Cobs::new() };
        let framer = match limit.get() {
            Some(max) => framer.max_length(max),
            None => framer,
        };
        framer.discard_oversized(discard)
    };
    let max = limit.or(Cobs::DEFAULT_MAX);
    let full = if zpe { 223 } else { 254 };
    // The encoding of a `max`-byte frame, without its delimiter.
    let mut checks = Checks::new(max.saturating_add(max / full).saturating_add(1), max);
    checks.keeps_pending = !discard;
    // With discard, an oversized frame is skipped the same way whether its delimiter arrived
    // with it or later.
    checks.chunking_independent = true;
    let on_frame = |frame: &Bytes, source: &[u8], _| {
        // The call consumed (with discard, skipped bytes and) the encoded frame and its 0x00.
        assert_eq!(source.last(), Some(&0), "a COBS frame not ended by 0x00");
        let body = &source[..source.len() - 1];
        let enc = match body.iter().rposition(|&b| b == 0) {
            Some(at) => &body[at + 1..],
            None => body,
        };
        let want = reference_decode(enc, zpe).expect("an accepted frame the reference rejects");
        assert!(
            frame[..] == want[..],
            "{enc:?} decoded as {frame:?}; the reference says {want:?}"
        );
    };
    checks.on_frame = &on_frame;
    let on_wire = |frame: &Bytes, wire: &[u8]| {
        assert!(
            wire.last() == Some(&0) && !wire[..wire.len() - 1].contains(&0),
            "frame {frame:?} encoded as {wire:?}"
        );
        assert!(
            wire.len() <= frame.len() + frame.len() / full + 2,
            "frame of {} bytes encoded in {}",
            frame.len(),
            wire.len()
        );
    };
    checks.on_wire = &on_wire;
    check(make, &stream, &checks);
});
