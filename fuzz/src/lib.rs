//! The harness shared by the fuzz targets in `fuzz_targets/`.
//!
//! Every target builds a framer from arbitrary options and hands it to [`check`] together with
//! an arbitrary [`Stream`]: bytes plus the sizes of the reads they arrive in. [`check`] feeds the
//! reads into one `BytesMut`, calls `frameify` until `Ok(None)` after each read and
//! `frameify_eof` until `Ok(None)` at the end, and asserts the invariants described in
//! `fuzz/README.md` (bounded buffering, progress, no endless loop, per-frame and whole-stream
//! round trips, and for some framers canonical encoding and independence from the read sizes).

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Buf, Bytes, BytesMut};
use rustls::{ClientConfig, ServerConfig};
use tendril_core::testkit::tls::Seeded;
use tendril_core::{FrameError, Framer, Outgoing};

/// One process-wide deterministic TLS setup for the targets that speak TLS (`tls`, `network`):
/// rewind the `Seeded` for every input so a crash replays. (A new `Seeded` per input would leak
/// its state each time, and LeakSanitizer would rightly say so.)
pub fn tls_setup() -> &'static (Seeded, Arc<ServerConfig>, Arc<ClientConfig>) {
    static SETUP: OnceLock<(Seeded, Arc<ServerConfig>, Arc<ClientConfig>)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let seeded = Seeded::new(0);
        let (server, client) = (seeded.server_config(), seeded.client_config());
        (seeded, server, client)
    })
}

/// Input bytes and how they arrive.
///
/// Its `Arbitrary` form is compact so that seeds and mutations stay close to the wire bytes:
/// the number of splits comes from the end of the input (as `arbitrary` does for lengths), then
/// that many split sizes, then the raw data (the rest). A seed `OPTIONS ++ DATA ++ [0]` gives
/// `DATA` in one read.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Sizes of successive reads (0 is an empty read); once they are used up, the rest of
    /// `data` arrives in one last read.
    pub splits: Vec<u8>,
    /// The bytes of the stream.
    pub data: Vec<u8>,
}

impl<'a> Arbitrary<'a> for Stream {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = u.arbitrary_len::<u8>()?;
        let splits = u.bytes(n)?.to_vec();
        let data = <&[u8]>::arbitrary(u)?.to_vec();
        Ok(Stream { splits, data })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = u.arbitrary_len::<u8>()?;
        let splits = u.bytes(n)?.to_vec();
        let data = u.take_rest().to_vec();
        Ok(Stream { splits, data })
    }
}

impl Stream {
    /// Map every data byte into the alphabet `b'a'..b'a' + size` (to make delimiter and marker
    /// collisions likely).
    pub fn narrow(&mut self, size: u8) {
        for b in &mut self.data {
            *b = narrow(*b, size);
        }
    }
}

/// `byte` mapped into `b'a'..b'a' + size`.
pub fn narrow(byte: u8, size: u8) -> u8 {
    b'a' + byte % size.max(1)
}

/// A maximum frame length: a small one (0..=4096), the framer's default, or `usize::MAX` (the
/// natural way to ask for no limit).
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `n % 4097`.
    Small(u16),
    /// Keep the framer's default.
    Default,
    /// `max_length(usize::MAX)`.
    Unlimited,
}

impl Limit {
    /// The limit to set, `None` for the default.
    pub fn get(self) -> Option<usize> {
        match self {
            Limit::Small(n) => Some(usize::from(n) % 4097),
            Limit::Default => None,
            Limit::Unlimited => Some(usize::MAX),
        }
    }

    /// The effective limit, given the framer's default.
    pub fn or(self, default: usize) -> usize {
        self.get().unwrap_or(default)
    }

    /// Skip this input: it is `Unlimited` and the known bug `unlimited-max` (arithmetic
    /// overflow on `max_length(usize::MAX)`) is tolerated.
    pub fn skip_known(self) -> bool {
        self == Limit::Unlimited && allow_known("unlimited-max")
    }
}

/// What a fresh framer must decode from `streamify(frame)`.
pub struct Expect {
    /// `None`: the frame itself.
    pub frame: Option<Bytes>,
    /// `streamify` may refuse this frame.
    pub may_refuse: bool,
}

impl Expect {
    /// The frame comes back unchanged and must be encodable.
    pub const SAME: Expect = Expect {
        frame: None,
        may_refuse: false,
    };
}

/// The invariants that hold for one framer configuration.
pub struct Checks<'a> {
    /// Bytes that may stay buffered after `frameify` returned `Ok(None)` (largest frame plus
    /// framing overhead).
    pub buffered_max: usize,
    /// The longest frame `frameify` may return.
    pub frame_max: usize,
    /// `streamify(frame)` reproduces exactly the bytes the frame was taken from.
    pub canonical: bool,
    /// `frameify` never drops bytes it has not framed: `Ok(None)` leaves the buffer untouched,
    /// and what stays buffered is always the unconsumed tail of the input.
    pub keeps_pending: bool,
    /// The frames, and whether the stream fails, do not depend on the read sizes.
    pub chunking_independent: bool,
    /// Decoding the re-encoded frames may end in `Truncated` when the original input did (the
    /// piecewise `Chunk`, whose re-encoded stream is the original bytes).
    pub restream_may_truncate: bool,
    /// What re-decoding a frame must give; the flag says the frame came from `frameify_eof`.
    pub expect: &'a dyn Fn(&Bytes, bool) -> Expect,
    /// More checks on each decoded frame, given the input bytes consumed by the call that
    /// returned it and whether that call was `frameify_eof`.
    pub on_frame: &'a dyn Fn(&Bytes, &[u8], bool),
    /// More checks on the wire form `streamify` gave for a frame.
    pub on_wire: &'a dyn Fn(&Bytes, &[u8]),
}

impl Checks<'_> {
    /// Defaults: no optional check, every frame round-trips unchanged.
    pub fn new(buffered_max: usize, frame_max: usize) -> Self {
        Checks {
            buffered_max,
            frame_max,
            canonical: false,
            keeps_pending: false,
            chunking_independent: false,
            restream_may_truncate: false,
            expect: &|_, _| Expect::SAME,
            on_frame: &|_, _, _| {},
            on_wire: &|_, _| {},
        }
    }
}

/// One decoded frame.
#[derive(Debug)]
pub struct Frame {
    /// The frame.
    pub bytes: Bytes,
    /// It came from `frameify_eof`.
    pub eof: bool,
    /// The input bytes consumed by the call that returned it.
    pub source: Range<usize>,
}

/// The result of decoding one stream.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The frames, in order.
    pub frames: Vec<Frame>,
    /// The non-recoverable error that ended the stream, if any.
    pub fatal: Option<FrameError>,
    /// How many recoverable errors were returned.
    pub recoverable: usize,
}

impl Decoded {
    fn frame_bytes(&self) -> Vec<Bytes> {
        self.frames.iter().map(|f| f.bytes.clone()).collect()
    }
}

/// `data` cut into reads of the sizes in `splits`, the rest in one last read.
pub fn reads<'d>(data: &'d [u8], splits: &[u8]) -> Vec<&'d [u8]> {
    let mut rest = data;
    let mut out = Vec::with_capacity(splits.len() + 1);
    for &s in splits {
        if rest.is_empty() {
            break;
        }
        let n = usize::from(s).min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest);
    }
    out
}

/// Decode `data`, arriving in reads of the sizes in `splits`, with `framer`, asserting the
/// per-call invariants.
pub fn decode<F: Framer<Frame = Bytes>>(
    framer: &mut F,
    data: &[u8],
    splits: &[u8],
    checks: &Checks,
) -> Decoded {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut out = Decoded::default();
    for read in reads(data, splits) {
        buf.extend_from_slice(read);
        fed += read.len();
        assert!(
            buf.len() <= checks.buffered_max.saturating_add(read.len()),
            "{} bytes buffered after a read of {}; at most {} may stay buffered",
            buf.len(),
            read.len(),
            checks.buffered_max
        );
        if !drain(framer, &mut buf, data, fed, false, checks, &mut out) {
            return out;
        }
        assert!(
            buf.len() <= checks.buffered_max,
            "frameify returned Ok(None) with {} bytes buffered; at most {} may stay buffered",
            buf.len(),
            checks.buffered_max
        );
    }
    if !drain(framer, &mut buf, data, fed, true, checks, &mut out) {
        return out;
    }
    assert!(
        buf.is_empty(),
        "frameify_eof returned Ok(None) but left {} bytes: {:?}",
        buf.len(),
        &buf[..]
    );
    match framer.frameify_eof(&mut buf) {
        Ok(None) => {}
        other => panic!("frameify_eof after the end gave {other:?}, expected Ok(None)"),
    }
    out
}

/// Call `frameify` (or `frameify_eof`) until `Ok(None)`. `false` once a non-recoverable error
/// ended the stream.
fn drain<F: Framer<Frame = Bytes>>(
    framer: &mut F,
    buf: &mut BytesMut,
    data: &[u8],
    fed: usize,
    eof: bool,
    checks: &Checks,
    out: &mut Decoded,
) -> bool {
    // Every call but the last must consume at least one byte (asserted below), so this bound is
    // never reached unless a framer loops.
    let limit = buf.len() + 16;
    // At the end of input a frame that was being skipped is reported once, possibly with
    // nothing left to consume.
    let mut eof_report = eof;
    for _ in 0..limit {
        let before = buf.len();
        let result = if eof {
            framer.frameify_eof(buf)
        } else {
            framer.frameify(buf)
        };
        if checks.keeps_pending {
            assert!(
                buf[..] == data[fed - buf.len()..fed],
                "the buffer is not the unconsumed tail of the input"
            );
        }
        match result {
            Ok(Some(frame)) => {
                assert!(
                    buf.len() < before,
                    "a frame ({frame:?}) was returned without consuming input"
                );
                assert!(
                    frame.len() <= checks.frame_max,
                    "a frame of {} bytes; the limit allows {}",
                    frame.len(),
                    checks.frame_max
                );
                out.frames.push(Frame {
                    bytes: frame,
                    eof,
                    source: fed - before..fed - buf.len(),
                });
            }
            Ok(None) => {
                if checks.keeps_pending && !eof {
                    assert_eq!(buf.len(), before, "Ok(None) consumed input");
                }
                return true;
            }
            Err(e) if e.is_recoverable() => {
                let consumed = buf.len() < before;
                assert!(
                    consumed || std::mem::take(&mut eof_report),
                    "recoverable error {e:?} without consuming input (would loop)"
                );
                out.recoverable += 1;
            }
            Err(e) => {
                out.fatal = Some(e);
                return false;
            }
        }
    }
    panic!("no Ok(None) after {limit} calls: the framer loops");
}

/// `streamify(frame)` with `framer`, the output collected through the `Buf` interface.
pub fn encode<F: Framer<Frame = Bytes>>(
    framer: &mut F,
    frame: Bytes,
) -> Result<Vec<u8>, FrameError> {
    let mut out = Outgoing::new();
    if let Err(e) = framer.streamify(frame, &mut out) {
        assert!(
            out.is_empty(),
            "a failed streamify ({e}) left {} bytes queued",
            out.len()
        );
        return Err(e);
    }
    let len = out.len();
    assert_eq!(out.remaining(), len);
    let mut wire = Vec::with_capacity(len);
    while out.has_remaining() {
        let chunk = out.chunk();
        assert!(
            !chunk.is_empty(),
            "Outgoing::chunk is empty with bytes remaining"
        );
        wire.extend_from_slice(chunk);
        let n = chunk.len();
        out.advance(n);
    }
    assert_eq!(wire.len(), len, "Outgoing::len disagrees with its chunks");
    Ok(wire)
}

/// Decode one encoded frame with a fresh framer: it must come out whole from one `frameify`
/// call and consume everything.
fn decode_one<F: Framer<Frame = Bytes>>(framer: &mut F, wire: &[u8]) -> Bytes {
    let mut buf = BytesMut::from(wire);
    let frame = match framer.frameify(&mut buf) {
        Ok(Some(frame)) => frame,
        other => panic!("decoding the re-encoded frame {wire:?} gave {other:?}"),
    };
    assert!(
        buf.is_empty(),
        "decoding the re-encoded frame {wire:?} left {:?}",
        &buf[..]
    );
    match framer.frameify(&mut buf) {
        Ok(None) => {}
        other => panic!("frameify on an empty buffer gave {other:?}"),
    }
    frame
}

/// Run every check on `stream` with framers made by `make`.
pub fn check<F, M>(make: M, stream: &Stream, checks: &Checks)
where
    F: Framer<Frame = Bytes>,
    M: Fn() -> F,
{
    let run = decode(&mut make(), &stream.data, &stream.splits, checks);

    // Each frame on its own: encode with a fresh framer, decode with another.
    let mut rewire = Vec::new();
    let mut expected = Vec::new();
    for frame in &run.frames {
        (checks.on_frame)(&frame.bytes, &stream.data[frame.source.clone()], frame.eof);
        let expect = (checks.expect)(&frame.bytes, frame.eof);
        let wire = match encode(&mut make(), frame.bytes.clone()) {
            Ok(wire) => wire,
            Err(_) if expect.may_refuse => continue,
            Err(e) => panic!(
                "streamify refused the decoded frame {:?} (from {:?}): {e:?}",
                frame.bytes,
                &stream.data[frame.source.clone()]
            ),
        };
        (checks.on_wire)(&frame.bytes, &wire);
        if checks.canonical {
            assert!(
                wire[..] == stream.data[frame.source.clone()],
                "re-encoding {:?} gave {:?}, not the bytes it came from, {:?}",
                frame.bytes,
                wire,
                &stream.data[frame.source.clone()]
            );
        }
        let again = decode_one(&mut make(), &wire);
        let want = expect.frame.unwrap_or_else(|| frame.bytes.clone());
        assert!(
            again == want,
            "round trip: frame {:?} encoded as {:?} decoded as {:?}, expected {:?}",
            frame.bytes,
            wire,
            again,
            want
        );
        rewire.extend_from_slice(&wire);
        expected.push(again);
    }

    // All re-encoded frames as one stream, arriving in reads of the same sizes.
    let rerun = decode(&mut make(), &rewire, &stream.splits, checks);
    assert_eq!(
        rerun.frame_bytes(),
        expected,
        "the re-encoded stream {rewire:?} decodes to other frames"
    );
    assert_eq!(
        rerun.recoverable, 0,
        "the re-encoded stream has oversized frames"
    );
    if let Some(e) = &rerun.fatal {
        let truncated_before = matches!(run.fatal, Some(FrameError::Truncated { .. }));
        assert!(
            checks.restream_may_truncate
                && truncated_before
                && matches!(e, FrameError::Truncated { .. }),
            "the re-encoded stream {rewire:?} fails: {e:?}"
        );
    }

    // The same input in one read.
    if checks.chunking_independent {
        let whole = decode(&mut make(), &stream.data, &[], checks);
        assert_eq!(
            whole.frame_bytes(),
            run.frame_bytes(),
            "other frames when the input arrives in one read"
        );
        assert_eq!(
            whole.fatal.is_some(),
            run.fatal.is_some(),
            "in one read the stream fails: {:?}; in reads of {:?}: {:?}",
            whole.fatal,
            stream.splits,
            run.fatal
        );
    }
}

/// `true` if the known bug `name` (see `fuzz/README.md`) is to be tolerated: the environment
/// variable `TENDRIL_FUZZ_ALLOW_KNOWN` lists it (comma-separated) or is `all`. Lets the fuzzer
/// look past a reported bug until it is fixed; unset, every known bug still fails.
pub fn allow_known(name: &str) -> bool {
    static ALLOWED: OnceLock<Vec<String>> = OnceLock::new();
    ALLOWED
        .get_or_init(|| {
            std::env::var("TENDRIL_FUZZ_ALLOW_KNOWN")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|a| a == name || a == "all")
}

/// `needle`'s first position in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `SliceFramer`: reading `stream` in place gives exactly the frames (and the first error) that
/// `frameify` gives, read by read. (The end of input is not compared: borrowed reading has no
/// `frameify_eof`.)
pub fn check_slices<F, M>(make: M, stream: &Stream)
where
    F: tendril_core::SliceFramer<Frame = Bytes>,
    M: Fn() -> F,
{
    fn owned<F: Framer<Frame = Bytes>>(
        mut framer: F,
        reads: &[&[u8]],
    ) -> (Vec<Vec<u8>>, Option<String>) {
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for read in reads {
            buf.extend_from_slice(read);
            loop {
                match framer.frameify(&mut buf) {
                    Ok(Some(frame)) => frames.push(frame.to_vec()),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e.to_string())),
                }
            }
        }
        (frames, None)
    }
    let reads = reads(&stream.data, &stream.splits);
    let mut framer = make();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut error = None;
    for read in &reads {
        buf.extend_from_slice(read);
        if let Err(e) = framer.for_each_slice(&mut buf, |f| frames.push(f.to_vec())) {
            error = Some(e.to_string());
            break;
        }
    }
    assert_eq!(
        (frames, error),
        owned(make(), &reads),
        "slices and frameify disagree"
    );
}
