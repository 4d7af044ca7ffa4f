//! The borrowed send path: `Framer::streamify_slice` and `Tendril::send_slice` give exactly the
//! bytes (and the errors) of the owned path, `streamify` and `send_frame`, for every built-in
//! framer and any frame, including the ones a framer refuses.

use bytes::{Buf, Bytes};
use proptest::prelude::*;
use tendril_core::{
    BoxFramer, Chunk, Cobs, Delimiter, Framer, Identity, LengthField, LengthPrefixed, Line,
    Netstring, Outgoing, Proto, Stuffing, Tendril,
};

/// A framer's name and how to make one.
type Make = (&'static str, fn() -> BoxFramer<Bytes>);

/// One of each framer, in configurations that refuse some frames (limits, delimiters inside).
fn framers() -> Vec<Make> {
    vec![
        ("identity", || Identity::new().boxed()),
        ("chunk 4", || Chunk::new(4).boxed()),
        ("chunk 4 piecewise", || {
            Chunk::new(4).piecewise(true).boxed()
        }),
        ("line crlf max 40", || Line::crlf().max_length(40).boxed()),
        ("line lf", || Line::lf().boxed()),
        ("delimiter ab", || {
            Delimiter::new(b"ab").unwrap().max_length(40).boxed()
        }),
        ("delimiter ab kept", || {
            Delimiter::new(b"ab").unwrap().keep_delimiter(true).boxed()
        }),
        ("length u8", || LengthPrefixed::u8().boxed()),
        ("length u32be max 40", || {
            LengthPrefixed::u32_be().max_length(40).boxed()
        }),
        ("length varint counting the header", || {
            LengthPrefixed::varint().counts_header(true).boxed()
        }),
        ("length u16le offset 2", || {
            LengthPrefixed::new(LengthField::U16Le).offset(2).boxed()
        }),
        ("netstring max 40", || {
            Netstring::new().max_length(40).boxed()
        }),
        ("stuffing", || Stuffing::default().boxed()),
        ("cobs", || Cobs::new().boxed()),
        ("cobs zpe max 300", || Cobs::zpe().max_length(300).boxed()),
    ]
}

/// The bytes an `Outgoing` holds.
fn drain(mut out: Outgoing) -> Vec<u8> {
    let mut bytes = Vec::new();
    while out.has_remaining() {
        let chunk = out.chunk();
        bytes.extend_from_slice(chunk);
        let n = chunk.len();
        out.advance(n);
    }
    bytes
}

/// A frame: mostly short, sometimes past the copy threshold, drawn from few letters so that
/// delimiters, zeros and stuffing prefixes turn up.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'\n'), Just(0u8), any::<u8>()], 0..64),
        1 => proptest::collection::vec(any::<u8>(), 2040..2100),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn streamify_slice_writes_what_streamify_writes(frames in proptest::collection::vec(frame(), 1..8)) {
        for (name, make) in framers() {
            let (mut owned, mut borrowed) = (make(), make());
            let (mut a, mut b) = (Outgoing::new(), Outgoing::new());
            for frame in &frames {
                let x = owned.streamify(Bytes::copy_from_slice(frame), &mut a);
                let y = borrowed.streamify_slice(frame, &mut b);
                prop_assert_eq!(
                    x.as_ref().map_err(ToString::to_string),
                    y.as_ref().map_err(ToString::to_string),
                    "{}: {:?}", name, frame
                );
            }
            prop_assert_eq!(drain(a), drain(b), "{}", name);
        }
    }

    #[test]
    fn send_slice_sends_what_send_frame_sends(frames in proptest::collection::vec(frame(), 1..8)) {
        for (name, make) in framers() {
            for proto in [Proto::TCP, Proto::UDP] {
                let mut owned = Tendril::with_boxed(proto, make(), make());
                let mut borrowed = Tendril::with_boxed(proto, make(), make());
                for frame in &frames {
                    let x = owned.send_frame(Bytes::copy_from_slice(frame)).map_err(|e| e.to_string());
                    let y = borrowed.send_slice(frame).map_err(|e| e.to_string());
                    prop_assert_eq!(x, y, "{}: {:?}", name, frame);
                }
                prop_assert_eq!(owned.stats().frames_sent, borrowed.stats().frames_sent);
                let wire = |t: &mut Tendril| {
                    let mut bytes = t.outgoing().take_all().to_vec();
                    while let Some(d) = t.poll_datagram() {
                        bytes.extend_from_slice(&d);
                    }
                    bytes
                };
                prop_assert_eq!(wire(&mut owned), wire(&mut borrowed), "{}", name);
            }
        }
    }
}

#[test]
fn send_slice_is_refused_as_send_frame_is() {
    let mut config = tendril_core::Config::default();
    config.high_watermark = 8;
    let mut t: Tendril = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf()).with_config(config);
    t.send_slice(b"0123456789").unwrap();
    assert!(matches!(
        t.send_slice(b"more"),
        Err(tendril_core::SendError::Full(()))
    ));
    t.outgoing().advance(12);
    t.close();
    assert!(matches!(
        t.send_slice(b"late"),
        Err(tendril_core::SendError::Closed(()))
    ));
}

/// Flips every bit on the way out: shows whether a frame went through the layer.
struct Invert;

impl tendril_core::Layer for Invert {
    fn recv(
        &mut self,
        input: &mut bytes::BytesMut,
        output: &mut bytes::BytesMut,
    ) -> Result<(), tendril_core::LayerError> {
        output.extend(input.split().iter().map(|b| !b));
        Ok(())
    }

    fn send(
        &mut self,
        input: &mut Outgoing,
        output: &mut Outgoing,
    ) -> Result<(), tendril_core::LayerError> {
        let plain = input.take_all();
        output.put_slice(&plain.iter().map(|b| !b).collect::<Vec<u8>>());
        Ok(())
    }
}

/// `send_frame` and `send_slice` go straight into the socket's queue only when open, not
/// finishing, without layers and below the high watermark; each of those conditions, broken
/// alone, takes them the general way (refused, or through the layer), and a datagram is taken
/// whole either way.
#[test]
fn each_condition_of_the_straight_send_path_is_honoured() {
    type Send = fn(&mut Tendril, &[u8]) -> Result<(), String>;
    let sends: [(&str, Send); 2] = [
        ("send_frame", |t, f| {
            t.send_frame(Bytes::copy_from_slice(f))
                .map_err(|e| e.to_string())
        }),
        ("send_slice", |t, f| {
            t.send_slice(f).map_err(|e| e.to_string())
        }),
    ];
    let line = |proto| -> Tendril { Tendril::new(proto, Line::lf(), Line::lf()) };
    for (name, send) in sends {
        // Straight: the bytes and both counters.
        let mut t = line(Proto::TCP);
        send(&mut t, b"hi").unwrap();
        assert_eq!(t.outgoing().take_all(), "hi\n", "{name}");
        assert_eq!(
            (t.stats().frames_sent, t.stats().bytes_sent),
            (1, 3),
            "{name}"
        );

        // Finishing, then closing: refused.
        let mut t = line(Proto::TCP);
        t.finish();
        assert!(
            send(&mut t, b"x").unwrap_err().contains("closing"),
            "{name}"
        );
        let mut t = line(Proto::TCP);
        t.close();
        assert!(
            send(&mut t, b"x").unwrap_err().contains("closing"),
            "{name}"
        );

        // At the high watermark: refused, and `Writable` once the queue drains.
        let mut config = tendril_core::Config::default();
        config.high_watermark = 4;
        let mut t = line(Proto::TCP).with_config(config);
        send(&mut t, b"abc").unwrap();
        assert!(
            send(&mut t, b"x").unwrap_err().contains("watermark"),
            "{name}"
        );
        t.outgoing().advance(4);
        assert!(
            matches!(t.poll_event(), Some(tendril_core::Event::Writable)),
            "{name}"
        );

        // A layer: the frame goes through it, and its bytes are counted once.
        let mut t = line(Proto::TCP);
        t.wrap(Invert);
        send(&mut t, b"hi").unwrap();
        let wire: Vec<u8> = t.outgoing().take_all().iter().map(|b| !b).collect();
        assert_eq!(wire, b"hi\n", "{name}");
        assert_eq!(
            (t.stats().frames_sent, t.stats().bytes_sent),
            (1, 3),
            "{name}"
        );

        // A datagram protocol: each frame is a datagram of its own.
        let mut t = line(Proto::UDP);
        send(&mut t, b"a").unwrap();
        send(&mut t, b"b").unwrap();
        assert!(t.outgoing().is_empty(), "{name}");
        assert_eq!(t.poll_datagram().unwrap(), "a\n", "{name}");
        assert_eq!(t.poll_datagram().unwrap(), "b\n", "{name}");
        assert_eq!(t.stats().bytes_sent, 4, "{name}");
    }
}
