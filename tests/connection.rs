//! The connection state machine, driven in memory: frames, switching, close paths,
//! back-pressure, idle memory.

mod kit;

use bytes::{Buf, Bytes};
use core::time::Duration;
use kit::{closed, log, texts, Recorder};
use proptest::prelude::*;
use tendril_core::testkit::Pipe;
use tendril_core::{
    AppError, Application, Chunk, CloseReason, Config, Delimiter, Event, Identity, LengthPrefixed,
    Line, Proto, SendError, Tendril,
};

fn line() -> Tendril {
    Tendril::new(Proto::TCP, Line::crlf(), Line::crlf())
}

const T0: Duration = Duration::ZERO;

/// The Python original's switching case, done from inside `recv_frame`.
struct Switcher {
    frames: Vec<Bytes>,
}

impl Application for Switcher {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        if frame == "DATA" {
            t.set_recv_framer(Chunk::new(5));
        } else if frame.len() == 5 && self.frames.last().is_some_and(|f| f == "DATA") {
            t.set_recv_framer(Line::crlf());
        }
        self.frames.push(frame);
        Ok(())
    }
}

#[test]
fn switching_to_chunk_inside_recv_frame_keeps_buffered_bytes() {
    for chunk in [usize::MAX, 1, 2, 7] {
        let mut t = line();
        let mut app = Switcher { frames: vec![] };
        for piece in b"DATA\r\n12345rest\r\nnext\r\n".chunks(chunk.min(64)) {
            t.handle_data(T0, piece);
            t.dispatch(&mut app);
        }
        assert_eq!(
            app.frames,
            ["DATA", "12345", "rest", "next"],
            "chunk {chunk}"
        );
    }
}

/// An SMTP-ish server: lines, and after DATA a body up to CRLF.CRLF.
struct Smtp {
    log: Vec<String>,
}

impl Application for Smtp {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        let text = String::from_utf8_lossy(&frame).into_owned();
        if text == "DATA" {
            t.set_recv_framer(Delimiter::new(b"\r\n.\r\n")?);
            t.send_frame("354 go ahead".into())?;
        } else if self.log.last().is_some_and(|l| l == "DATA") {
            t.set_recv_framer(Line::crlf());
            t.send_frame("250 queued".into())?;
        } else {
            t.send_frame("250 ok".into())?;
        }
        self.log.push(text);
        Ok(())
    }
}

#[test]
fn smtp_data_switches_to_a_delimiter_and_back_with_pipelined_commands() {
    let mut t = line();
    let mut app = Smtp { log: vec![] };
    t.handle_data(
        T0,
        b"MAIL FROM:<a@b>\r\nDATA\r\nSubject: x\r\n\r\nline\r\n.\r\nQUIT\r\n",
    );
    t.dispatch(&mut app);
    assert_eq!(
        app.log,
        ["MAIL FROM:<a@b>", "DATA", "Subject: x\r\n\r\nline", "QUIT"]
    );
    assert_eq!(
        t.outgoing().take_all(),
        "250 ok\r\n354 go ahead\r\n250 queued\r\n250 ok\r\n"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn two_tendrils_exchange_frames_both_ways_with_random_chunking(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..40),
        chunks in prop::collection::vec(1usize..50, 1..20),
    ) {
        let lp = || Tendril::new(Proto::TCP, LengthPrefixed::u16_be(), LengthPrefixed::u16_be());
        let (client_log, server_log) = (log(), log());
        let mut pipe = Pipe::new(
            (lp(), Recorder::new(&client_log)),
            (lp(), Recorder::echo(&server_log)),
        );
        for f in &frames {
            pipe.client.0.send_frame(Bytes::from(f.clone())).unwrap();
        }
        let mut i = 0;
        pipe.run_chunked(|| { i += 1; chunks[i % chunks.len()] });
        let sent: Vec<Bytes> = frames.iter().map(|f| Bytes::from(f.clone())).collect();
        prop_assert_eq!(&server_log.lock().unwrap().frames, &sent);
        prop_assert_eq!(&client_log.lock().unwrap().frames, &sent);

        pipe.client.0.close();
        pipe.run();
        prop_assert_eq!(closed(&client_log), ["closed locally"]);
        prop_assert_eq!(closed(&server_log), ["closed by the peer"]);
    }
}

#[test]
fn ten_thousand_frames_queued_then_close_are_all_delivered_first() {
    let (client_log, server_log) = (log(), log());
    let mut pipe = Pipe::new(
        (line(), Recorder::new(&client_log)),
        (line(), Recorder::new(&server_log)),
    );
    for i in 0..10_000 {
        pipe.client
            .0
            .send_frame(format!("frame {i}").into())
            .unwrap();
    }
    pipe.client.0.close();
    assert!(matches!(
        pipe.client.0.send_frame("late".into()),
        Err(SendError::Closed(_))
    ));
    pipe.run_chunked(|| 1000);
    let got = texts(&server_log);
    assert_eq!(got.len(), 10_000);
    assert_eq!(got[9_999], "frame 9999");
    assert_eq!(closed(&client_log), ["closed locally"]);
    assert_eq!(closed(&server_log), ["closed by the peer"]);
}

/// Runs a tendril to its end and returns its close reasons.
fn close_reasons(mut t: Tendril, drive: impl FnOnce(&mut Tendril, &mut Recorder)) -> Vec<String> {
    let l = log();
    let mut app = Recorder::new(&l);
    drive(&mut t, &mut app);
    t.dispatch(&mut app);
    if t.wants_shutdown() {
        t.handle_shutdown(T0);
        t.dispatch(&mut app);
    }
    // Nothing after the end reports a second close.
    t.handle_eof(T0);
    t.handle_error(T0, "late");
    t.handle_timeout(Duration::from_secs(3600));
    t.close();
    t.abort();
    t.dispatch(&mut app);
    assert!(t.is_closed());
    closed(&l)
}

#[test]
fn closed_is_reported_exactly_once_on_every_path() {
    type Drive = Box<dyn FnOnce(&mut Tendril, &mut Recorder)>;
    let cases: Vec<(&str, Drive)> = vec![
        ("closed by the peer", Box::new(|t, _| t.handle_eof(T0))),
        ("closed locally", Box::new(|t, _| t.close())),
        ("aborted", Box::new(|t, _| t.abort())),
        (
            "I/O error: connection reset",
            Box::new(|t, _| t.handle_error(T0, "connection reset")),
        ),
        (
            "framing error: input ended inside a line",
            Box::new(|t, _| {
                t.set_recv_framer(LengthPrefixed::u8());
                t.handle_data(T0, b"\x05ab");
                t.handle_eof(T0);
            }),
        ),
        (
            "framing error: line longer than 4 bytes",
            Box::new(|t, _| {
                t.set_recv_framer(Line::crlf().max_length(4));
                t.handle_data(T0, b"far too long\r\n");
            }),
        ),
    ];
    for (expected, drive) in cases {
        let reasons = close_reasons(line(), drive);
        assert_eq!(reasons.len(), 1, "{expected}: {reasons:?}");
        let reason = &reasons[0];
        let prefix = expected.split(" line").next().unwrap_or(expected);
        assert!(
            reason.starts_with(prefix),
            "expected {expected:?}, got {reason:?}"
        );
    }
}

#[test]
fn idle_timeout_closes_once_and_activity_postpones_it() {
    let mut config = Config::default();
    config.idle_timeout = Some(Duration::from_secs(10));
    let l = log();
    let mut app = Recorder::new(&l);
    let mut t = line().with_config(config).started_at(T0);
    assert_eq!(t.poll_timeout(), Some(Duration::from_secs(10)));
    t.handle_data(Duration::from_secs(5), b"hi\r\n");
    t.handle_timeout(Duration::from_secs(10));
    t.dispatch(&mut app);
    assert!(closed(&l).is_empty());
    assert_eq!(t.poll_timeout(), Some(Duration::from_secs(15)));
    t.handle_timeout(Duration::from_secs(15));
    t.dispatch(&mut app);
    assert!(t.wants_shutdown());
    t.handle_shutdown(Duration::from_secs(15));
    t.handle_timeout(Duration::from_secs(99));
    t.dispatch(&mut app);
    assert_eq!(closed(&l), ["idle timeout"]);
}

#[test]
fn a_graceful_close_to_a_peer_that_never_reads_is_aborted_after_the_linger_time() {
    let l = log();
    let mut app = Recorder::new(&l);
    let mut t = line().started_at(T0);
    t.send_frame("unread".into()).unwrap();
    t.close();
    assert!(!t.wants_shutdown());
    let deadline = t.poll_timeout().unwrap();
    assert_eq!(deadline, Duration::from_secs(30));
    t.handle_timeout(deadline);
    t.dispatch(&mut app);
    assert!(t.is_closed());
    assert_eq!(t.outgoing_len(), 0);
    assert_eq!(closed(&l), ["the peer did not take the last bytes in time"]);
}

struct Failing;

impl Application for Failing {
    fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        Err(format!("cannot handle {frame:?}").into())
    }
}

#[test]
fn an_application_error_closes_only_its_connection() {
    let mut bad = line();
    let mut good = line();
    let l = log();
    let mut good_app = Recorder::new(&l);
    bad.handle_data(T0, b"boom\r\nafter\r\n");
    good.handle_data(T0, b"fine\r\n");
    bad.dispatch(&mut Failing);
    good.dispatch(&mut good_app);
    assert!(bad.is_closed());
    assert!(
        bad.poll_event().is_none(),
        "closed was delivered once, by dispatch"
    );
    assert!(good.is_open());
    assert_eq!(texts(&l), ["fine"]);
}

#[test]
fn a_framing_error_is_the_close_reason_with_its_message() {
    let mut t: Tendril = Tendril::new(Proto::TCP, LengthPrefixed::u32_be(), Identity::new());
    t.handle_data(T0, &[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(t.poll_frame(), None);
    // A framing error closes gracefully: queued replies still go out before the FIN.
    assert!(t.wants_shutdown());
    t.handle_shutdown(T0);
    match t.poll_event() {
        Some(Event::Closed(CloseReason::Frame(e))) => assert_eq!(
            e.to_string(),
            "length-prefixed frame longer than 8388608 bytes (length field says 4294967295)"
        ),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn back_pressure_refuses_sends_above_high_and_reports_writable_below_low() {
    let mut config = Config::default();
    config.high_watermark = 1000;
    config.low_watermark = 100;
    let l = log();
    let mut app = Recorder::new(&l);
    let mut t = line().with_config(config);
    let frame = Bytes::from(vec![b'x'; 300]);
    let mut accepted = 0;
    let refused = loop {
        match t.send_frame(frame.clone()) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(accepted, 4, "sends below the high watermark are accepted");
    assert!(
        matches!(refused, SendError::Full(ref f) if f == &frame),
        "the frame is handed back"
    );
    // Above high, frames are not delivered and the driver is told not to read.
    t.handle_data(T0, b"request\r\n");
    assert!(!t.wants_read());
    t.dispatch(&mut app);
    assert!(texts(&l).is_empty());
    // Draining to the low watermark brings Writable, then the frame.
    let queued = t.outgoing_len();
    t.outgoing().advance(queued - 100);
    t.dispatch(&mut app);
    assert_eq!(l.lock().unwrap().writable, 1);
    assert_eq!(texts(&l), ["request"]);
    assert!(t.wants_read());
}

/// A peer that sends its requests, half-closes and never reads the replies: delivery is
/// paused by back-pressure, so the connection could neither finish nor close. It is aborted
/// after the linger timeout, counted from when it stalled.
#[test]
fn a_peer_that_half_closes_and_reads_nothing_is_aborted_after_the_linger_time() {
    let mut config = Config::default();
    config.high_watermark = 1000;
    config.low_watermark = 100;
    let l = log();
    let mut app = Recorder::echo(&l);
    let mut t = line().with_config(config);
    let requests = format!("{}\r\n", "x".repeat(98)).repeat(30);
    t.handle_data(T0, requests.as_bytes());
    t.handle_eof(T0);
    t.dispatch(&mut app);
    assert!(
        t.is_open(),
        "paused, not closed: the replies may still be read"
    );
    assert_eq!(t.poll_timeout(), Some(Duration::from_secs(30)));
    t.handle_timeout(Duration::from_secs(30));
    t.dispatch(&mut app);
    assert_eq!(closed(&l), ["the peer did not take the last bytes in time"]);
}

/// The same peer, reading its replies slowly after its EOF: every reply arrives, and the
/// stall deadline is lifted each time it reads.
#[test]
fn a_peer_that_half_closes_and_reads_slowly_gets_every_reply() {
    let mut config = Config::default();
    config.high_watermark = 1000;
    config.low_watermark = 100;
    let l = log();
    let mut app = Recorder::echo(&l);
    let mut t = line().with_config(config);
    let requests = format!("{}\r\n", "x".repeat(98)).repeat(30);
    t.handle_data(T0, requests.as_bytes());
    t.handle_eof(T0);
    t.dispatch(&mut app);
    let mut now = T0;
    let mut replies = 0;
    while !t.is_closed() {
        // Each read comes 20 s after the last: within the 30 s linger, but the whole
        // exchange takes longer than it.
        now += Duration::from_secs(20);
        t.handle_timeout(now);
        replies += t.outgoing().take_all().len();
        t.dispatch(&mut app);
        if t.wants_shutdown() {
            t.handle_shutdown(now);
            t.dispatch(&mut app);
        }
    }
    assert_eq!(replies, requests.len(), "{:?} at {now:?}", closed(&l));
    assert!(now > Duration::from_secs(30));
    assert_eq!(closed(&l), ["closed by the peer"]);
}

/// Found by the TLS fuzz target: with delivery paused, a write that drained the queue made
/// `wants_read` true before the buffered frames were delivered, so a driver that writes and
/// then reads in the same turn (as the Tokio driver does) added a read on top every round.
#[test]
fn a_driver_that_writes_then_reads_before_dispatching_keeps_the_buffer_bounded() {
    let mut config = Config::default();
    config.high_watermark = 1;
    let l = log();
    let mut app = Recorder::echo(&l);
    let mut t = line().with_config(config);
    let requests = "ping\r\n".repeat(100);
    let mut biggest = 0;
    for _ in 0..50 {
        // One turn of the driver: write what is queued, read if asked, then dispatch.
        let queued = t.outgoing_len();
        t.outgoing().advance(queued);
        if t.wants_read() {
            t.handle_data(T0, requests.as_bytes());
        }
        biggest = biggest.max(t.buffered().len());
        t.dispatch(&mut app);
    }
    assert!(
        biggest <= 2 * requests.len(),
        "the buffer grew to {biggest} bytes"
    );
    assert!(texts(&l).len() > 40, "and frames still flow");
}

/// Setting only the high watermark, below the default low one, once made `dispatch` loop for
/// ever: paused (above high), then writable (below low), then paused again.
#[test]
fn a_low_watermark_at_or_above_the_high_one_acts_as_just_below_it() {
    let mut config = Config::default();
    config.high_watermark = 64;
    assert!(config.low_watermark > config.high_watermark);
    let l = log();
    let mut app = Recorder::new(&l);
    let mut t = line().with_config(config);
    t.send_frame(Bytes::from(vec![b'x'; 100])).unwrap();
    t.handle_data(T0, b"request\r\n");
    t.dispatch(&mut app);
    assert!(texts(&l).is_empty(), "paused above the high watermark");
    assert_eq!(l.lock().unwrap().writable, 0, "and not writable");
    t.outgoing().advance(40);
    t.dispatch(&mut app);
    assert_eq!(
        l.lock().unwrap().writable,
        1,
        "below the high watermark: writable"
    );
    assert_eq!(texts(&l), ["request"]);
}

/// The fuzz finding `fuzz/regressions/connection/buffer-bound-while-back-pressure-pauses-delivery`:
/// with delivery paused by back-pressure, a caller that kept handing in reads grew the receive
/// buffer past "largest frame + one read". The bound is a contract with the driver: it reads
/// only while `wants_read`, plus at most the read already in flight.
#[test]
fn back_pressure_holds_the_receive_buffer_to_a_frame_plus_the_read_in_flight() {
    let mut config = Config::default();
    config.high_watermark = 1;
    let l = log();
    let mut app = Recorder::new(&l);
    let mut t: Tendril =
        Tendril::new(Proto::TCP, LengthPrefixed::u8(), LengthPrefixed::u8()).with_config(config);
    t.send_frame(Bytes::from_static(b"a reply the peer never reads"))
        .unwrap();
    assert!(!t.wants_read(), "delivery paused: the driver stops reading");
    let frame = |n: u8| [&[n][..], &[b'x'; 255][..n as usize]].concat();
    // The read that was in flight when reading stopped: kept, not delivered.
    let in_flight = [frame(200), frame(200)].concat();
    t.handle_data(T0, &in_flight);
    t.dispatch(&mut app);
    assert!(texts(&l).is_empty());
    assert_eq!(t.buffered().len(), in_flight.len());
    assert!(!t.wants_read(), "still paused: a driver reads no more");
    // The peer reads its reply: delivery resumes and the buffer drains to a partial frame.
    let queued = t.outgoing_len();
    t.outgoing().advance(queued);
    t.dispatch(&mut app);
    assert_eq!(texts(&l).len(), 2);
    assert!(t.buffered().is_empty());
    assert!(t.wants_read());
}

#[test]
fn a_large_frame_body_is_queued_without_copying() {
    let mut t: Tendril = Tendril::new(Proto::TCP, Identity::new(), LengthPrefixed::u32_be());
    let body = Bytes::from(vec![7u8; 64 * 1024]);
    let ptr = body.as_ptr();
    t.send_frame(body).unwrap();
    let out = t.outgoing();
    assert_eq!(out.chunk(), [0, 1, 0, 0]);
    out.advance(4);
    assert_eq!(out.chunk().as_ptr(), ptr);
}

#[test]
fn an_idle_connection_holds_no_buffers() {
    let l = log();
    let mut app = Recorder::echo(&l);
    let mut t = line();
    t.handle_data(T0, b"hello\r\n");
    t.dispatch(&mut app);
    let n = t.outgoing_len();
    t.outgoing().advance(n);
    assert!(t.heap_bytes() > 0);
    drop(l.lock().unwrap().frames.drain(..));
    t.release_idle_buffers();
    assert_eq!(t.heap_bytes(), 0);
    eprintln!(
        "idle TCP tendril: {} bytes inline + {} heap bytes in buffers",
        std::mem::size_of::<Tendril>(),
        t.heap_bytes()
    );
}

#[test]
fn eof_in_the_middle_of_a_frame_closes_with_truncated() {
    let mut t: Tendril = Tendril::new(Proto::TCP, LengthPrefixed::u16_be(), Identity::new());
    t.handle_data(T0, &[0, 10, b'a']);
    t.handle_eof(T0);
    assert_eq!(t.poll_frame(), None);
    t.handle_shutdown(T0);
    match t.poll_event() {
        Some(Event::Closed(CloseReason::Frame(e))) => {
            assert!(e
                .to_string()
                .starts_with("input ended inside a length-prefixed frame"))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn after_the_peers_eof_replies_still_go_out_before_the_close() {
    let l = log();
    let mut app = Recorder::echo(&l);
    let mut t = line();
    t.handle_data(T0, b"one\r\ntwo");
    t.handle_eof(T0);
    t.dispatch(&mut app);
    assert_eq!(texts(&l), ["one", "two"]);
    assert_eq!(t.outgoing().take_all(), "one\r\ntwo\r\n");
    assert!(t.wants_shutdown());
    t.handle_shutdown(T0);
    t.dispatch(&mut app);
    assert_eq!(closed(&l), ["closed by the peer"]);
}

#[test]
fn finish_half_closes_and_replies_still_arrive() {
    let (client_log, server_log) = (log(), log());
    let mut pipe = Pipe::new(
        (line(), Recorder::new(&client_log)),
        (line(), Recorder::echo(&server_log)),
    );
    pipe.client.0.send_frame("last words".into()).unwrap();
    pipe.client.0.finish();
    assert!(matches!(
        pipe.client.0.send_frame("more".into()),
        Err(SendError::Closed(_))
    ));
    pipe.run();
    assert_eq!(
        texts(&client_log),
        ["last words"],
        "the echo came back after our FIN"
    );
    assert_eq!(closed(&client_log), ["closed by the peer"]);
    assert_eq!(closed(&server_log), ["closed by the peer"]);
}

#[test]
fn bytes_arriving_after_the_close_began_are_not_kept() {
    // Found by the simulator (seed 2826): a closed tendril kept appending what arrived.
    let mut t = line();
    t.send_frame("unsent".into()).unwrap();
    t.close();
    t.handle_data(T0, &[b'x'; 10_000]);
    assert!(t.buffered().is_empty());
    t.abort();
    t.handle_data(T0, &[b'x'; 10_000]);
    assert!(t.buffered().is_empty());
    assert_eq!(t.heap_bytes(), 0);
}

/// DATA with a size limit: an oversized body is skipped to its end, answered 552 in order, and
/// the session goes on with the command pipelined behind it.
struct SizedData {
    log: Vec<String>,
}

impl Application for SizedData {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        let text = String::from_utf8_lossy(&frame).into_owned();
        if text == "DATA" {
            t.set_recv_framer(
                Delimiter::new(b"\r\n.\r\n")?
                    .max_length(10)
                    .discard_oversized(true),
            );
            t.send_frame("354".into())?;
        } else if self.log.last().is_some_and(|l| l == "DATA") {
            t.set_recv_framer(Line::crlf());
            t.send_frame("250".into())?;
        } else {
            t.send_frame(Bytes::from(format!("250 {text}")))?;
        }
        self.log.push(text);
        Ok(())
    }

    fn event(&mut self, t: &mut Tendril, event: &Event) {
        if let Event::FrameSkipped(_) = event {
            t.set_recv_framer(Line::crlf());
            let _ = t.send_frame("552 too big".into());
            self.log.push("skipped".into());
        }
    }
}

#[test]
fn a_skipped_oversized_frame_is_reported_at_its_end_and_in_order() {
    for chunk in [usize::MAX, 7, 1] {
        let mut t = line();
        let mut app = SizedData { log: vec![] };
        let input = b"DATA\r\nthis body is far too long\r\n.\r\nRSET\r\n";
        for piece in input.chunks(chunk.min(input.len())) {
            t.handle_data(T0, piece);
            t.dispatch(&mut app);
        }
        assert_eq!(app.log, ["DATA", "skipped", "RSET"], "chunk {chunk}");
        assert_eq!(
            t.outgoing().take_all(),
            "354\r\n552 too big\r\n250 RSET\r\n"
        );
    }
}

#[test]
fn the_core_never_reads_a_clock() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    let mut checked = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue; // data beside the code, such as the test kit's certificate
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for needle in [
                "Instant::now",
                "SystemTime",
                "std::thread",
                "std::net::Tcp",
                "std::net::Udp",
            ] {
                assert!(!text.contains(needle), "{} uses {needle}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked > 10);
}

#[test]
fn a_send_framer_error_leaves_the_connection_open() {
    let mut t = line();
    assert!(matches!(
        t.send_frame("two\nlines".into()),
        Err(SendError::Frame(_))
    ));
    assert!(t.is_open());
    t.send_frame("fine".into()).unwrap();
    assert_eq!(t.outgoing().take_all(), "fine\r\n");
}
