//! `Stuffing`: arbitrary prefix (1..=8 bytes), begin, end and nop (optionally all from a
//! 4-letter alphabet shared with the data), any maximum, discard-oversized on or off. Options
//! that `Stuffing::new` refuses are skipped.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tendril_core::Stuffing;
use tendril_core_fuzz::{check, narrow, Checks, Limit, Stream};

#[derive(Arbitrary, Debug)]
struct Input {
    prefix: [u8; 8],
    prefix_len: u8,
    begin: u8,
    end: u8,
    nop: u8,
    narrow: bool,
    max: Limit,
    discard: bool,
    stream: Stream,
}

fuzz_target!(|input: Input| {
    let Input {
        mut prefix,
        prefix_len,
        mut begin,
        mut end,
        mut nop,
        narrow: small,
        max: limit,
        discard,
        mut stream,
    } = input;
    if limit.skip_known() {
        return;
    }
    let prefix = &mut prefix[..1 + usize::from(prefix_len) % 8];
    if small {
        for b in prefix.iter_mut().chain([&mut begin, &mut end, &mut nop]) {
            *b = narrow(*b, 4);
        }
        stream.narrow(4);
    }
    let prefix = &*prefix;
    if Stuffing::new(prefix, begin, end, nop).is_err() {
        return;
    }
    let make = || {
        let framer = Stuffing::new(prefix, begin, end, nop).expect("checked above");
        let framer = match limit.get() {
            Some(max) => framer.max_length(max),
            None => framer,
        };
        framer.discard_oversized(discard)
    };
    let max = limit.or(Stuffing::DEFAULT_MAX);
    let plen = prefix.len();
    // A stuffed frame (each prefix may gain a nop) plus all but one byte of the end marker.
    let mut checks = Checks::new(max.saturating_add(max / plen).saturating_add(plen), max);
    // Junk outside frames is dropped, and with discard an oversized frame is dropped up to its
    // end marker whether it arrived whole or in pieces.
    checks.chunking_independent = true;
    let on_wire = |frame: &Bytes, wire: &[u8]| {
        let mut start = prefix.to_vec();
        start.push(begin);
        let mut stop = prefix.to_vec();
        stop.push(end);
        assert!(
            wire.starts_with(&start) && wire.ends_with(&stop),
            "frame {frame:?} sent as {wire:?}, without its markers"
        );
        let stuffed = wire.len() - start.len() - stop.len();
        assert!(
            stuffed <= frame.len() + frame.len() / plen,
            "frame {frame:?} stuffed to {stuffed} bytes"
        );
    };
    checks.on_wire = &on_wire;
    check(make, &stream, &checks);
});
