//! tokio-util codecs in a `Tendril`: dispatch, framer switching, resets, errors, datagrams.

use bytes::Bytes;
use core::time::Duration;
use tendril_codec::{CodecFramer, DecoderOnly};
use tendril_core::{
    AppError, Application, BoxFramer, Chunk, CloseReason, Event, FrameError, Framer, Line, Proto,
    SendError, Tendril,
};
use tokio_util::codec::{AnyDelimiterCodec, LengthDelimitedCodec, LinesCodec};

const NOW: Duration = Duration::ZERO;

fn lines() -> CodecFramer<LinesCodec> {
    CodecFramer::new(LinesCodec::new())
}

/// Shouts every line back; after `BIN` takes one length-delimited frame, then lines again.
#[derive(Default)]
struct Shout {
    got: Vec<Bytes>,
}

impl Application for Shout {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        if frame == "BIN" {
            t.set_recv_framer(CodecFramer::bytes(LengthDelimitedCodec::new()));
        } else if self.got.last().is_some_and(|f| f == "BIN") {
            t.set_recv_framer(Line::crlf());
        } else {
            t.send_frame(Bytes::from(frame.to_ascii_uppercase()))?;
        }
        self.got.push(frame);
        Ok(())
    }
}

#[test]
fn a_codec_framer_switches_with_native_framers_inside_recv_frame() {
    let mut t: Tendril = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf());
    let mut app = Shout::default();
    let wire = b"hi\r\nBIN\r\n\0\0\0\x03a\r\nafter\r\n";
    for byte in wire.chunks(1) {
        t.handle_data(NOW, byte);
        t.dispatch(&mut app);
    }
    assert_eq!(app.got, ["hi", "BIN", "a\r\n", "after"]);
    assert_eq!(t.outgoing().take_all(), "HI\r\nAFTER\r\n");
}

#[test]
fn a_lines_codec_tendril_answers_through_dispatch() {
    struct Len;
    impl Application<String> for Len {
        fn recv_frame(&mut self, t: &mut Tendril<String>, line: String) -> Result<(), AppError> {
            t.send_frame(format!("{} chars", line.chars().count()))?;
            Ok(())
        }
    }
    let mut t = Tendril::new(Proto::TCP, lines(), lines());
    t.handle_data(NOW, "héllo\r\nwor".as_bytes());
    t.dispatch(&mut Len);
    t.handle_data(NOW, b"ld\n");
    t.dispatch(&mut Len);
    assert_eq!(t.outgoing().take_all(), "5 chars\n5 chars\n");
    t.handle_eof(NOW);
    t.dispatch(&mut Len);
    assert!(t.wants_shutdown(), "the peer's EOF closes the connection");
    t.handle_shutdown(NOW);
    assert!(t.is_closed());
}

#[test]
fn switching_back_to_a_codec_framer_starts_it_afresh() {
    let chunk: BoxFramer<String> = Chunk::new(3)
        .map(
            |b: Bytes| String::from_utf8(b.to_vec()).map_err(FrameError::custom),
            |s: String| Ok(Bytes::from(s)),
        )
        .boxed();
    let mut t = Tendril::new(Proto::TCP, lines(), lines());
    t.handle_data(NOW, b"DATA\r\npartial");
    assert_eq!(t.poll_frame().as_deref(), Some("DATA"));
    // LinesCodec has searched "partial" (7 bytes) for a `\n`.
    assert_eq!(t.poll_frame(), None);
    let codec = t.set_recv_framer_boxed(chunk);
    assert_eq!(t.poll_frame().as_deref(), Some("par"));
    // Back to the codec: only "tial" is left, so its old offset would point past the end.
    t.set_recv_framer_boxed(codec);
    assert_eq!(t.poll_frame(), None);
    t.handle_data(NOW, b"\r\n");
    assert_eq!(t.poll_frame().as_deref(), Some("tial"));
}

#[test]
fn a_codec_error_closes_the_tendril_with_the_codecs_message() {
    let mut t = Tendril::new(
        Proto::TCP,
        CodecFramer::new(LinesCodec::new_with_max_length(4)),
        lines(),
    );
    t.handle_data(NOW, b"ok\nmuch too long\nnever\n");
    assert_eq!(t.poll_frame().as_deref(), Some("ok"));
    assert_eq!(t.poll_frame(), None);
    assert!(
        t.wants_shutdown(),
        "the framing error closes the connection"
    );
    t.handle_shutdown(NOW);
    match t.poll_event() {
        Some(Event::Closed(reason @ CloseReason::Frame(FrameError::Custom(_)))) => {
            assert_eq!(
                reason.to_string(),
                "framing error: max line length exceeded"
            );
        }
        other => panic!("expected a framing close, got {other:?}"),
    }
}

#[test]
fn each_datagram_starts_with_a_fresh_codec() {
    let mut t: Tendril = Tendril::new(
        Proto::UDP,
        CodecFramer::bytes(LengthDelimitedCodec::new()),
        CodecFramer::bytes(LengthDelimitedCodec::new()),
    );
    // Only a length field: LengthDelimitedCodec takes it off the buffer and waits for 5 bytes.
    t.handle_datagram(NOW, b"\0\0\0\x05", false);
    assert_eq!(t.poll_frame(), None);
    // Without a reset after the datagram, these bytes would be read as that 5-byte body.
    t.handle_datagram(NOW, b"\0\0\0\x01x", false);
    assert_eq!(t.poll_frame().unwrap(), "x");
    assert_eq!(t.poll_frame(), None);
    assert!(t.is_open());
}

#[test]
fn lines_in_datagrams_end_at_the_datagrams_end() {
    let mut t = Tendril::new(Proto::UDP, lines(), lines());
    t.handle_datagram(NOW, b"a\nb", false);
    assert_eq!(t.poll_frame().as_deref(), Some("a"));
    assert_eq!(t.poll_frame().as_deref(), Some("b"));
    t.handle_datagram(NOW, b"c\r\n", false);
    assert_eq!(t.poll_frame().as_deref(), Some("c"));
    assert_eq!(t.poll_frame(), None);
}

#[test]
fn a_decoder_only_framer_refuses_sends_and_the_connection_goes_on() {
    let fields = CodecFramer::new(DecoderOnly::new(AnyDelimiterCodec::new(
        b",".to_vec(),
        b",".to_vec(),
    )));
    let mut t: Tendril = Tendril::new(Proto::TCP, fields, Line::lf());
    t.handle_data(NOW, b"x,y,");
    assert_eq!(t.poll_frame().unwrap(), "x");
    // A receive-only codec as the send framer: every frame is refused.
    t.set_send_framer(CodecFramer::new(DecoderOnly::new(LinesCodec::new())).frame_type());
    match t.send_frame(Bytes::from("nope")) {
        Err(SendError::Frame(e)) => assert!(e.to_string().contains("only decodes")),
        other => panic!("expected a refused frame, got {other:?}"),
    }
    assert!(t.is_open());
    assert_eq!(t.outgoing().len(), 0);
    assert_eq!(t.poll_frame().unwrap(), "y");
}

#[test]
fn a_length_field_held_by_the_codec_is_not_seen_by_the_frame_timeout() {
    // LengthDelimitedCodec takes the length field off the buffer before the body arrives; the
    // frame timeout, which looks at the buffer, does not see a frame begun. The native framer
    // leaves the field in the buffer and is caught.
    let mut config = tendril_core::Config::default();
    config.frame_timeout = Some(Duration::from_secs(1));
    let run = |mut t: Tendril| {
        t.set_config(config);
        t.handle_data(NOW, b"\0\0\0\x05");
        assert_eq!(t.poll_frame(), None);
        t.handle_timeout(Duration::from_secs(2));
        t.wants_shutdown()
    };
    let native = run(Tendril::new(
        Proto::TCP,
        tendril_core::LengthPrefixed::u32_be(),
        Line::crlf(),
    ));
    assert!(native, "the native framer's partial frame times out");
    let bridged = run(Tendril::new(
        Proto::TCP,
        CodecFramer::bytes(LengthDelimitedCodec::new()),
        Line::crlf(),
    ));
    assert!(!bridged, "the codec's header escapes the frame timeout");
}
