//! Decode and encode throughput of every built-in framer, side by side with `tokio_util`'s codecs
//! and a plain `memchr` scan on identical input.
//!
//! Run with `cargo bench --bench framers` (a filter narrows it: `cargo bench --bench framers --
//! 'decode/line'`). Groups:
//!
//! - `decode` / `decode_frames`: bytes/s and frames/s of taking frames off a receive buffer. The
//!   mode is `prefilled` (the whole stream is already buffered) or `reads4k` (the stream arrives
//!   in 4 KiB reads appended to the buffer, as a driver does; bytes/s only). The parameter is the
//!   frame's payload size. `identity` and `tokio_bytes` are also measured `per_read`: each read
//!   of the frame size is one frame. `line_slices` and `delimiter_slices` read the same frames
//!   in place (`SliceFramer::for_each_slice`: borrowed, no `Bytes` per frame).
//! - `encode` / `encode_frames`: bytes/s and frames/s of writing frames into the outgoing queue
//!   (`Outgoing` for Tendril, a `BytesMut` for `tokio_util`); `*_borrowed` encode from a `&[u8]`
//!   (`streamify_slice`), as `LinesCodec` and `AnyDelimiterCodec` encode from a `&str`;
//!   `*_send_slice` / `*_send_frame` go through a `Tendril`'s `send_slice` / `send_frame`.
//! - `send_frames`: `LengthPrefixed::u32_be` encoding plus a vectored write of the queue into a
//!   `Vec`, 512 B to 16 KiB, against `LengthDelimitedCodec`: where `COPY_THRESHOLD` should sit.
//!
//! Each iteration handles a stream of about 256 KiB (at least 16 frames). Inputs are made with
//! the Tendril framer's own `streamify`; a `tokio_util` codec or the `memchr` scan gets the very
//! same bytes. Frames are taken with `Framer::frameify` / `Decoder::decode` on a `BytesMut`,
//! exactly as a connection does.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use tendril_core::{
    Chunk, Cobs, Delimiter, Framer, Identity, LengthPrefixed, Line, Netstring, Outgoing, Proto,
    SliceFramer, Stuffing, Tendril,
};
use tokio_util::codec::{
    AnyDelimiterCodec, BytesCodec, Decoder, Encoder, LengthDelimitedCodec, LinesCodec,
};

/// Payload sizes of one frame.
const SIZES: [usize; 4] = [16, 64, 1024, 64 * 1024];
/// Payload bytes per iteration (the stream is at least [`MIN_FRAMES`] frames long).
const STREAM: usize = 256 * 1024;
/// The fewest frames in one iteration's stream.
const MIN_FRAMES: usize = 16;
/// The read size of the `reads4k` mode.
const READ: usize = 4096;
/// The length limit given to the line and delimiter framers and codecs (their defaults are
/// 8 KiB / 64 KiB and unlimited respectively): both sides get the same, above 64 KiB.
const MAX: usize = 1 << 20;

/// What a frame's payload bytes look like.
#[derive(Clone, Copy)]
enum Payload {
    /// Printable ASCII: valid UTF-8 for `LinesCodec`, no `\n` and no `\0`.
    Text,
    /// Uniformly random bytes (zeros for COBS, the odd `0xff` for stuffing).
    Binary,
}

/// How the stream reaches the receive buffer.
#[derive(Clone, Copy)]
enum Mode {
    /// All of it is buffered before the first frame is taken.
    Prefilled,
    /// It arrives in reads of this many bytes; frames are taken after each read.
    Reads(usize),
}

impl Mode {
    fn label(self, size: usize) -> &'static str {
        match self {
            Mode::Prefilled => "prefilled",
            Mode::Reads(READ) => "reads4k",
            Mode::Reads(n) if n == size => "per_read",
            Mode::Reads(_) => "reads",
        }
    }
}

/// A deterministic xorshift generator, so every run sees the same input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The frames of one stream: `count` payloads of `size` bytes, slices of one buffer.
fn payloads(size: usize, kind: Payload) -> Vec<Bytes> {
    let count = (STREAM / size).max(MIN_FRAMES);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ size as u64);
    let all: Vec<u8> = (0..count * size)
        .map(|_| {
            let r = rng.next() >> 24;
            match kind {
                Payload::Text => b' ' + (r % 95) as u8,
                Payload::Binary => r as u8,
            }
        })
        .collect();
    let all = Bytes::from(all);
    (0..count)
        .map(|i| all.slice(i * size..(i + 1) * size))
        .collect()
}

/// The wire form of `frames` through `framer`.
fn wire<F: Framer<Frame = Bytes>>(mut framer: F, frames: &[Bytes]) -> Bytes {
    let mut out = Outgoing::new();
    for frame in frames {
        framer
            .streamify(frame.clone(), &mut out)
            .expect("benchmark frames are encodable");
    }
    out.take_all()
}

/// Something that takes frames off a receive buffer.
trait Subject {
    /// Take one frame or more (and drop them); how many, 0 when more bytes are needed.
    fn next(&mut self, buf: &mut BytesMut) -> usize;
}

/// A Tendril framer.
struct TendrilFramer<F>(F);

impl<F: Framer> Subject for TendrilFramer<F> {
    #[inline]
    fn next(&mut self, buf: &mut BytesMut) -> usize {
        match self.0.frameify(buf) {
            Ok(Some(frame)) => {
                black_box(frame);
                1
            }
            Ok(None) => 0,
            Err(e) => panic!("framer failed on benchmark input: {e}"),
        }
    }
}

/// A Tendril framer read in place: every whole frame buffered, borrowed
/// (`SliceFramer::for_each_slice`).
struct TendrilSlices<F>(F);

impl<F: SliceFramer> Subject for TendrilSlices<F> {
    #[inline]
    fn next(&mut self, buf: &mut BytesMut) -> usize {
        match self.0.for_each_slice(buf, |frame| {
            black_box(frame);
        }) {
            Ok(n) => n,
            Err(e) => panic!("framer failed on benchmark input: {e}"),
        }
    }
}

/// A `tokio_util` decoder.
struct Codec<D>(D);

impl<D: Decoder> Subject for Codec<D>
where
    D::Error: std::fmt::Debug,
{
    #[inline]
    fn next(&mut self, buf: &mut BytesMut) -> usize {
        match self.0.decode(buf) {
            Ok(Some(frame)) => {
                black_box(frame);
                1
            }
            Ok(None) => 0,
            Err(e) => panic!("codec failed on benchmark input: {e:?}"),
        }
    }
}

/// Take every frame out of `wire` the way `mode` delivers it; returns the frame count.
#[inline]
fn run<S: Subject>(subject: &mut S, buf: &mut BytesMut, wire: &Bytes, mode: Mode) -> usize {
    let mut frames = 0;
    match mode {
        Mode::Prefilled => loop {
            match subject.next(buf) {
                0 => break,
                n => frames += n,
            }
        },
        Mode::Reads(read) => {
            for chunk in wire.chunks(read) {
                buf.reserve(read);
                buf.extend_from_slice(chunk);
                loop {
                    match subject.next(buf) {
                        0 => break,
                        n => frames += n,
                    }
                }
            }
        }
    }
    frames
}

/// The receive buffer an iteration starts with.
fn start_buf(wire: &Bytes, mode: Mode) -> BytesMut {
    match mode {
        Mode::Prefilled => BytesMut::from(&wire[..]),
        Mode::Reads(_) => BytesMut::new(),
    }
}

/// A benchmark group and the unit its throughput is reported in.
struct Groups<'a, 'c> {
    group: &'a mut BenchmarkGroup<'c, WallTime>,
    /// Frames/s (`Throughput::Elements`) instead of bytes/s (`Throughput::Bytes`).
    frames: bool,
}

impl Groups<'_, '_> {
    /// Run `f` with the throughput of `wire_len` bytes or `count` frames.
    fn each(
        &mut self,
        id: &BenchmarkId,
        wire_len: usize,
        count: usize,
        f: impl FnMut(&mut criterion::Bencher<'_, WallTime>),
    ) {
        self.group.throughput(if self.frames {
            Throughput::Elements(count as u64)
        } else {
            Throughput::Bytes(wire_len as u64)
        });
        self.group.bench_function(id.clone(), f);
    }
}

/// Benchmark decoding `wire` (which holds `count` frames of `size`) with subjects from `make`.
fn decode<S: Subject>(
    groups: &mut Groups<'_, '_>,
    name: &str,
    size: usize,
    mode: Mode,
    wire: &Bytes,
    count: usize,
    make: impl Fn() -> S,
) {
    // Check the input once: every frame comes out and nothing is left.
    let mut buf = start_buf(wire, mode);
    let got = run(&mut make(), &mut buf, wire, mode);
    assert!(buf.is_empty(), "{name}: {} bytes left over", buf.len());
    assert_eq!(got, count, "{name}: frame count");

    let id = BenchmarkId::new(format!("{name}/{}", mode.label(size)), label(size));
    groups.each(&id, wire.len(), count, |b| {
        b.iter_batched(
            || (make(), start_buf(wire, mode)),
            |(mut subject, mut buf)| {
                black_box(run(&mut subject, &mut buf, wire, mode));
                // Dropped outside the timed part.
                (subject, buf)
            },
            BatchSize::LargeInput,
        )
    });
}

/// The upper bound of a line framer: `memchr_iter` over the same buffer, nothing else.
fn memchr_scan(groups: &mut Groups<'_, '_>, size: usize, mode: Mode, wire: &Bytes, count: usize) {
    let scan = |buf: &mut BytesMut| -> usize {
        let mut n = 0;
        for pos in memchr::memchr_iter(b'\n', buf) {
            black_box(pos);
            n += 1;
        }
        n
    };
    let run = move |buf: &mut BytesMut| -> usize {
        match mode {
            Mode::Prefilled => scan(buf),
            Mode::Reads(read) => {
                // The same copying as the framers see; the scan never splits the buffer, so
                // it just starts over after each read.
                let mut n = 0;
                for chunk in wire.chunks(read) {
                    buf.clear();
                    buf.reserve(read);
                    buf.extend_from_slice(chunk);
                    n += scan(buf);
                }
                n
            }
        }
    };
    assert_eq!(run(&mut start_buf(wire, mode)), count, "memchr scan count");
    let id = BenchmarkId::new(
        format!("memchr_scan_lines/{}", mode.label(size)),
        label(size),
    );
    groups.each(&id, wire.len(), count, |b| {
        b.iter_batched(
            || start_buf(wire, mode),
            |mut buf| {
                black_box(run(&mut buf));
                buf
            },
            BatchSize::LargeInput,
        )
    });
}

fn label(size: usize) -> String {
    if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

fn line() -> Line {
    Line::crlf().max_length(MAX)
}

fn delimiter() -> Delimiter {
    Delimiter::new(b"\0")
        .expect("a non-empty delimiter")
        .max_length(MAX)
}

/// Every decode benchmark in one `mode`.
fn decode_all(groups: &mut Groups<'_, '_>, mode: Mode) {
    for size in SIZES {
        let text = payloads(size, Payload::Text);
        let binary = payloads(size, Payload::Binary);
        let n = text.len();

        macro_rules! tendril {
            ($name:expr, $frames:expr, $make:expr) => {{
                let w = wire($make, $frames);
                let count = match mode {
                    // An identity frame never spans two reads.
                    Mode::Reads(read) if $name == "identity" && size > read => w.len() / read,
                    _ => n,
                };
                decode(groups, $name, size, mode, &w, count, || {
                    TendrilFramer($make)
                });
                w
            }};
        }

        tendril!("identity", &binary, Identity::new().max_length(size));
        tendril!("chunk", &binary, Chunk::new(size));
        let lines = tendril!("line", &text, line());
        decode(groups, "line_slices", size, mode, &lines, n, || {
            TendrilSlices(line())
        });
        decode(groups, "tokio_lines", size, mode, &lines, n, || {
            Codec(LinesCodec::new_with_max_length(MAX))
        });
        memchr_scan(groups, size, mode, &lines, n);
        let delimited = tendril!("delimiter", &text, delimiter());
        decode(
            groups,
            "delimiter_slices",
            size,
            mode,
            &delimited,
            n,
            || TendrilSlices(delimiter()),
        );
        decode(
            groups,
            "tokio_any_delimiter",
            size,
            mode,
            &delimited,
            n,
            || {
                Codec(AnyDelimiterCodec::new_with_max_length(
                    b"\0".to_vec(),
                    b"\0".to_vec(),
                    MAX,
                ))
            },
        );
        let prefixed = tendril!("length_u32be", &binary, LengthPrefixed::u32_be());
        decode(
            groups,
            "tokio_length_delimited",
            size,
            mode,
            &prefixed,
            n,
            || Codec(LengthDelimitedCodec::new()),
        );
        tendril!("length_varint", &binary, LengthPrefixed::varint());
        tendril!("netstring", &binary, Netstring::new());
        tendril!("stuffing", &binary, Stuffing::default());
        tendril!("cobs", &binary, Cobs::new());
        tendril!("cobs_zpe", &binary, Cobs::zpe());
    }
}

/// Identity against `BytesCodec` where they mean the same thing: each read is one frame.
fn decode_per_read(groups: &mut Groups<'_, '_>) {
    for size in SIZES {
        let binary = payloads(size, Payload::Binary);
        let w = wire(Identity::new(), &binary);
        let mode = Mode::Reads(size);
        let n = binary.len();
        decode(groups, "identity", size, mode, &w, n, || {
            TendrilFramer(Identity::new())
        });
        decode(groups, "tokio_bytes", size, mode, &w, n, || {
            Codec(BytesCodec::new())
        });
    }
}

/// Benchmark `streamify` of every frame into a reused `Outgoing` (cleared after each stream,
/// as a driver's writes would drain it).
fn encode_tendril<F: Framer<Frame = Bytes>>(
    groups: &mut Groups<'_, '_>,
    name: &str,
    size: usize,
    frames: &[Bytes],
    make: impl Fn() -> F,
) {
    encode_with(groups, name, size, frames, make, |framer, frame, out| {
        framer.streamify(frame.clone(), out)
    });
}

/// Benchmark `encode` of every frame into a reused `Outgoing`, cleared after each stream.
fn encode_with<F: Framer<Frame = Bytes>>(
    groups: &mut Groups<'_, '_>,
    name: &str,
    size: usize,
    frames: &[Bytes],
    make: impl Fn() -> F,
    mut encode: impl FnMut(&mut F, &Bytes, &mut Outgoing) -> Result<(), tendril_core::FrameError>,
) {
    let wire_len = wire(make(), frames).len();
    let mut framer = make();
    let mut out = Outgoing::new();
    let id = BenchmarkId::new(name, label(size));
    groups.each(&id, wire_len, frames.len(), |b| {
        b.iter(|| {
            for frame in frames {
                encode(&mut framer, frame, &mut out).expect("encodable");
            }
            black_box(&out);
            out.clear();
        })
    });
}

/// [`encode_tendril`] through `streamify_slice`, each frame borrowed: the send path for a reply
/// formatted into the caller's own buffer, as `LinesCodec` takes a `&str`.
fn encode_tendril_borrowed<F: Framer<Frame = Bytes>>(
    groups: &mut Groups<'_, '_>,
    name: &str,
    size: usize,
    frames: &[Bytes],
    make: impl Fn() -> F,
) {
    encode_with(groups, name, size, frames, make, |framer, frame, out| {
        framer.streamify_slice(frame, out)
    });
}

/// Every frame through a `Tendril`'s send path, `Tendril::send_slice` (`borrowed`) or
/// `Tendril::send_frame` (each frame cloned), into its outgoing queue, cleared after each
/// stream: what an application's reply costs, framer dispatch and bookkeeping included.
fn encode_send<F: Framer<Frame = Bytes> + Send + 'static>(
    groups: &mut Groups<'_, '_>,
    name: &str,
    size: usize,
    frames: &[Bytes],
    make: impl Fn() -> F,
    borrowed: bool,
) {
    let wire_len = wire(make(), frames).len();
    let mut t: Tendril = Tendril::new(Proto::TCP, Line::crlf(), make());
    let id = BenchmarkId::new(name, label(size));
    groups.each(&id, wire_len, frames.len(), |b| {
        b.iter(|| {
            if borrowed {
                for frame in frames {
                    t.send_slice(frame).expect("sendable");
                }
            } else {
                for frame in frames {
                    t.send_frame(frame.clone()).expect("sendable");
                }
            }
            black_box(t.outgoing());
            t.outgoing().clear();
        })
    });
}

/// Benchmark a `tokio_util` encoder writing every frame into a reused `BytesMut`.
fn encode_codec<T: Clone, E: Encoder<T>>(
    groups: &mut Groups<'_, '_>,
    name: &str,
    size: usize,
    frames: &[T],
    mut codec: E,
) where
    E::Error: std::fmt::Debug,
{
    let mut dst = BytesMut::new();
    let id = BenchmarkId::new(name, label(size));
    for frame in frames {
        codec.encode(frame.clone(), &mut dst).expect("encodable");
    }
    let wire_len = dst.len();
    groups.each(&id, wire_len, frames.len(), |b| {
        b.iter(|| {
            dst.clear();
            for frame in frames {
                codec.encode(frame.clone(), &mut dst).expect("encodable");
            }
            black_box(&dst);
        })
    });
}

fn encode_all(groups: &mut Groups<'_, '_>) {
    for size in SIZES {
        let text = payloads(size, Payload::Text);
        let binary = payloads(size, Payload::Binary);
        let strs: Vec<&str> = text
            .iter()
            .map(|p| std::str::from_utf8(p).expect("ASCII"))
            .collect();

        encode_tendril(groups, "identity", size, &binary, Identity::new);
        encode_send(
            groups,
            "identity_send_frame",
            size,
            &binary,
            Identity::new,
            false,
        );
        encode_send(
            groups,
            "identity_send_slice",
            size,
            &binary,
            Identity::new,
            true,
        );
        encode_codec(groups, "tokio_bytes", size, &binary, BytesCodec::new());
        encode_tendril(groups, "chunk", size, &binary, || Chunk::new(size));
        encode_tendril(groups, "line", size, &text, line);
        encode_tendril_borrowed(groups, "line_borrowed", size, &text, line);
        encode_send(groups, "line_send_frame", size, &text, line, false);
        encode_send(groups, "line_send_slice", size, &text, line, true);
        let lines = LinesCodec::new_with_max_length(MAX);
        encode_codec(groups, "tokio_lines", size, &strs, lines);
        encode_tendril(groups, "delimiter", size, &text, delimiter);
        encode_tendril_borrowed(groups, "delimiter_borrowed", size, &text, delimiter);
        encode_send(
            groups,
            "delimiter_send_frame",
            size,
            &text,
            delimiter,
            false,
        );
        encode_send(groups, "delimiter_send_slice", size, &text, delimiter, true);
        let any = AnyDelimiterCodec::new_with_max_length(b"\0".to_vec(), b"\0".to_vec(), MAX);
        encode_codec(groups, "tokio_any_delimiter", size, &strs, any);
        encode_tendril(
            groups,
            "length_u32be",
            size,
            &binary,
            LengthPrefixed::u32_be,
        );
        encode_tendril_borrowed(
            groups,
            "length_u32be_borrowed",
            size,
            &binary,
            LengthPrefixed::u32_be,
        );
        let u32_be = LengthPrefixed::u32_be;
        encode_send(
            groups,
            "length_u32be_send_frame",
            size,
            &binary,
            u32_be,
            false,
        );
        encode_send(
            groups,
            "length_u32be_send_slice",
            size,
            &binary,
            u32_be,
            true,
        );
        let ldc = LengthDelimitedCodec::new();
        encode_codec(groups, "tokio_length_delimited", size, &binary, ldc);
        encode_tendril(
            groups,
            "length_varint",
            size,
            &binary,
            LengthPrefixed::varint,
        );
        encode_tendril(groups, "netstring", size, &binary, Netstring::new);
        encode_tendril(groups, "stuffing", size, &binary, Stuffing::default);
        encode_tendril(groups, "cobs", size, &binary, Cobs::new);
        encode_tendril(groups, "cobs_zpe", size, &binary, Cobs::zpe);
    }
}

/// Where copying a body into the outgoing tail stops paying (`COPY_THRESHOLD`): frames/s of
/// `LengthPrefixed::u32_be` encoding followed by a vectored write of the whole queue into a
/// reused `Vec` (standing in for the kernel's copy, with a per-`iovec` cost), against
/// `LengthDelimitedCodec` into a `BytesMut` written the same way.
fn send_crossover(c: &mut Criterion) {
    use bytes::Buf;
    use std::io::{IoSlice, Write};

    let mut group = c.benchmark_group("send_frames");
    for size in [512, 1024, 2048, 4096, 8192, 16384] {
        let frames = payloads(size, Payload::Binary);
        group.throughput(Throughput::Elements(frames.len() as u64));
        let mut framer = LengthPrefixed::u32_be();
        let mut out = Outgoing::new();
        let mut sink = Vec::with_capacity(STREAM * 2);
        group.bench_function(BenchmarkId::new("length_u32be", label(size)), |b| {
            b.iter(|| {
                for frame in &frames {
                    framer
                        .streamify(frame.clone(), &mut out)
                        .expect("encodable");
                }
                sink.clear();
                // As a driver writes: up to 64 `iovec`s per call until the queue is empty.
                while out.has_remaining() {
                    let mut slices = [IoSlice::new(&[]); 64];
                    let n = out.chunks_vectored(&mut slices);
                    let written = sink.write_vectored(&slices[..n]).expect("a Vec takes it");
                    out.advance(written);
                }
                black_box(&sink);
            })
        });
        let mut codec = LengthDelimitedCodec::new();
        let mut dst = BytesMut::new();
        group.bench_function(
            BenchmarkId::new("tokio_length_delimited", label(size)),
            |b| {
                b.iter(|| {
                    for frame in &frames {
                        codec.encode(frame.clone(), &mut dst).expect("encodable");
                    }
                    sink.clear();
                    sink.write_all(&dst).expect("a Vec takes it");
                    dst.clear();
                    black_box(&sink);
                })
            },
        );
    }
    group.finish();
}

fn framers(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let mut groups = Groups {
        group: &mut group,
        frames: false,
    };
    decode_all(&mut groups, Mode::Prefilled);
    decode_all(&mut groups, Mode::Reads(READ));
    decode_per_read(&mut groups);
    group.finish();

    // Frames/s of the fed modes follow from their bytes/s: measured once, in bytes/s.
    let mut group = c.benchmark_group("decode_frames");
    decode_all(
        &mut Groups {
            group: &mut group,
            frames: true,
        },
        Mode::Prefilled,
    );
    group.finish();

    for (name, frames) in [("encode", false), ("encode_frames", true)] {
        let mut group = c.benchmark_group(name);
        encode_all(&mut Groups {
            group: &mut group,
            frames,
        });
        group.finish();
    }
}

/// Short runs (292 benchmarks of about 0.8 s each, some 4 minutes on two cores); lengthen with
/// e.g. `cargo bench --bench framers -- --measurement-time 3 'decode/line'`.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500))
        .nresamples(20_000)
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = framers, send_crossover
}
criterion_main!(benches);
