//! `Chunk`: records of 1..=64 bytes, whole or piecewise.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tendril_core::Chunk;
use tendril_core_fuzz::{check, check_slices, Checks, Stream};

#[derive(Arbitrary, Debug)]
struct Input {
    len: u8,
    piecewise: bool,
    stream: Stream,
}

fuzz_target!(|input: Input| {
    let len = 1 + usize::from(input.len) % 64;
    let piecewise = input.piecewise;
    let make = || Chunk::new(len).piecewise(piecewise);
    // Whole records: less than one record stays buffered. Piecewise: nothing does.
    let mut checks = Checks::new(if piecewise { 0 } else { len - 1 }, len);
    checks.canonical = true;
    checks.keeps_pending = true;
    checks.chunking_independent = !piecewise;
    checks.restream_may_truncate = piecewise;
    let on_frame = |frame: &bytes::Bytes, _: &[u8], _| {
        if !piecewise {
            assert_eq!(frame.len(), len, "a whole-record frame of another length");
        } else {
            assert!(!frame.is_empty(), "an empty piece");
        }
    };
    checks.on_frame = &on_frame;
    check(make, &input.stream, &checks);
    check_slices(make, &input.stream);
});
