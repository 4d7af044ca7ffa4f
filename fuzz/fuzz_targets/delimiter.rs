//! `Delimiter`: a 1..=8-byte delimiter (optionally from a 1..=3-letter alphabet shared with the
//! data, so that self-overlapping delimiters and near misses are common), keep on or off, any
//! maximum, discard-oversized on or off.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tendril_core::Delimiter;
use tendril_core_fuzz::{check, check_slices, find, narrow, Checks, Expect, Limit, Stream};

#[derive(Arbitrary, Debug)]
struct Input {
    delimiter: [u8; 8],
    delimiter_len: u8,
    /// `Some(k)`: map the delimiter and the data into a `1 + k % 3`-letter alphabet.
    alphabet: Option<u8>,
    keep: bool,
    max: Limit,
    discard: bool,
    stream: Stream,
}

fuzz_target!(|input: Input| {
    let Input {
        mut delimiter,
        delimiter_len,
        alphabet,
        keep,
        max: limit,
        discard,
        mut stream,
    } = input;
    if limit.skip_known() {
        return;
    }
    let delimiter = &mut delimiter[..1 + usize::from(delimiter_len) % 8];
    if let Some(k) = alphabet {
        let size = 1 + k % 3;
        for b in delimiter.iter_mut() {
            *b = narrow(*b, size);
        }
        stream.narrow(size);
    }
    let delimiter = &*delimiter;
    let make = || {
        let framer = Delimiter::new(delimiter).expect("a non-empty delimiter");
        let framer = match limit.get() {
            Some(max) => framer.max_length(max),
            None => framer,
        };
        framer.keep_delimiter(keep).discard_oversized(discard)
    };
    let max = limit.or(Delimiter::DEFAULT_MAX);
    let dlen = delimiter.len();
    // A frame of `max` bytes may wait with all but the last delimiter byte.
    let mut checks = Checks::new(
        max.saturating_add(dlen - 1),
        max.saturating_add(if keep { dlen } else { 0 }),
    );
    checks.keeps_pending = !discard;
    checks.chunking_independent = true;
    // A terminated frame comes back as it is. The last, unterminated frame (from
    // frameify_eof) is sent with the delimiter, so with `keep` it comes back with it; and if its
    // end and the delimiter together contain the delimiter earlier, it cannot be sent.
    let expect = |frame: &Bytes, eof: bool| {
        let terminated = keep && frame.ends_with(delimiter);
        if terminated {
            return Expect::SAME;
        }
        assert!(
            !keep || eof,
            "keep_delimiter: a frame from frameify lacks the delimiter"
        );
        let mut sent = frame.to_vec();
        sent.extend_from_slice(delimiter);
        let refusable = eof && find(&sent, delimiter) != Some(frame.len());
        Expect {
            frame: keep.then(|| Bytes::from(sent)),
            may_refuse: refusable,
        }
    };
    checks.expect = &expect;
    // The call consumed (with discard, skipped bytes and) the frame and its delimiter; at the
    // end, the frame alone.
    let on_frame = |frame: &Bytes, source: &[u8], eof: bool| {
        let body = match frame.strip_suffix(delimiter) {
            Some(body) if keep => body,
            _ => &frame[..],
        };
        assert!(
            find(body, delimiter).is_none(),
            "a frame body contains the delimiter"
        );
        let taken = |wire: &[u8]| {
            if discard {
                source.ends_with(wire)
            } else {
                source == wire
            }
        };
        assert!(
            taken(&[body, delimiter].concat()) || (eof && taken(body)),
            "frame {frame:?} taken from {source:?} (eof: {eof})"
        );
    };
    checks.on_frame = &on_frame;
    check(make, &stream, &checks);
    if !discard {
        // Borrowed reading has no discard mode.
        check_slices(make, &stream);
    }
});
