//! `Identity`: any maximum; every read comes out as frames of at most `max` bytes.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tendril_core::Identity;
use tendril_core_fuzz::{check, check_slices, Checks, Limit, Stream};

#[derive(Arbitrary, Debug)]
struct Input {
    max: Limit,
    stream: Stream,
}

fuzz_target!(|input: Input| {
    let make = || match input.max.get() {
        Some(max) => Identity::new().max_length(max),
        None => Identity::new(),
    };
    let max = input.max.or(Identity::DEFAULT_MAX).max(1);
    let mut checks = Checks::new(0, max);
    checks.canonical = true;
    checks.keeps_pending = true;
    check(make, &input.stream, &checks);
    check_slices(make, &input.stream);
});
