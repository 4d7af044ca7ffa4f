//! `Netstring`: any maximum (small or the default).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tendril_core::Netstring;
use tendril_core_fuzz::{check, Checks, Limit, Stream};

#[derive(Arbitrary, Debug)]
struct Input {
    max: Limit,
    /// Map the data into `0-9 : ,` and a letter, so that well-formed netstrings are common.
    narrow: bool,
    stream: Stream,
}

fuzz_target!(|input: Input| {
    let Input {
        max: limit,
        narrow,
        mut stream,
    } = input;
    if limit.skip_known() {
        return;
    }
    if narrow {
        for b in &mut stream.data {
            *b = b"0123456789:,x"[usize::from(*b % 13)];
        }
    }
    let make = || match limit.get() {
        Some(max) => Netstring::new().max_length(max),
        None => Netstring::new(),
    };
    let max = limit.or(Netstring::DEFAULT_MAX);
    // At most 20 digits, ':', `max` bytes of data, and no ','.
    let mut checks = Checks::new(max.saturating_add(21), max);
    checks.canonical = true;
    checks.keeps_pending = true;
    checks.chunking_independent = true;
    check(make, &stream, &checks);
});
