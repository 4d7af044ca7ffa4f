//! Deterministic simulation: tendrils over the test kit's seeded, faulty network
//! ([`tendril_core::testkit::net`], the hostile preset), the same one users get.
//!
//! Streams: random chunk splits, 1-byte reads, short writes, delays, resets mid-frame and
//! half-closes. Datagrams: loss, duplication and reordering through the tracker.
//! Invariants: on streams every frame arrives once, in order, unless the connection closed with
//! a reason; `closed` is reported exactly once; nothing panics; buffers stay bounded; datagrams
//! are never corrupted or delivered to the wrong peer.
//!
//! Every other stream run is over TLS (rustls with the test kit's deterministic provider, so a
//! seed replays byte for byte): from the first byte, or STARTTLS after a first plaintext frame.
//! Resets and hang-ups are injected anywhere, the handshake included; every run must end with
//! both sides closed exactly once, and a side that outlives its peer's hang-up must close by
//! itself.
//!
//! `cargo test --test sim` runs `TENDRIL_SIM_SEEDS` seeds (default 400, half of them over TLS).
//! A failure names its seed and shows the network's last events; replay it alone with
//! `TENDRIL_SIM_SEED=<seed> cargo test --test sim -- --nocapture`.
//! It needs the `rustls` feature (the README's test command turns every feature on).
#![cfg(feature = "rustls")]

use bytes::Bytes;
use core::time::Duration;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tendril_core::testkit::net::{check, Faults, Net, SimRng};
use tendril_core::tls::TlsLayer;
use tendril_core::tracker::{Tracker, TrackerConfig};
use tendril_core::{
    AppError, Application, BoxFramer, CloseReason, Cobs, Framer, Identity, LengthPrefixed, Line,
    Netstring, Proto, Reject, Tendril,
};

/// A framer pair both ends agree on, and frames it can carry.
fn framing(kind: u64) -> (fn() -> BoxFramer<Bytes>, &'static str) {
    match kind % 4 {
        0 => (|| Line::crlf().max_length(4096).boxed(), "line"),
        1 => (|| LengthPrefixed::u16_be().boxed(), "length"),
        2 => (|| Netstring::new().boxed(), "netstring"),
        _ => (|| Cobs::new().boxed(), "cobs"),
    }
}

fn frame(rng: &mut SimRng, kind: &str, n: u64) -> Bytes {
    let limit = if rng.chance(10) { 3000 } else { 40 };
    let len = rng.below(limit) as usize;
    let mut body: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    if kind == "line" {
        body.iter_mut().for_each(|b| {
            if *b == b'\n' {
                *b = b'n'
            }
        });
    }
    // A sequence number up front makes duplicates and reordering visible.
    let mut framed = format!("{n:08}").into_bytes();
    framed.extend(body);
    Bytes::from(framed)
}

#[derive(Default)]
struct Seen {
    frames: Vec<Bytes>,
    closes: Vec<String>,
    /// Closed by a time limit (the linger), not by the protocol.
    timed_out: bool,
    wrapped: bool,
}

/// The frame that asks for TLS mid-stream; the server echoes it in plaintext, then both wrap.
const STARTTLS: &[u8] = b"STARTTLS";

/// How a stream run uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Off,
    FromTheStart,
    Starttls,
}

struct Side {
    seen: Arc<Mutex<Seen>>,
    echo: bool,
    /// STARTTLS still to do: the layer to wrap in when the STARTTLS frame arrives.
    upgrade: Option<Box<dyn FnOnce() -> TlsLayer + Send>>,
}

impl Application for Side {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        self.seen.lock().unwrap().frames.push(frame.clone());
        let upgrade = if frame == STARTTLS {
            self.upgrade.take()
        } else {
            None
        };
        if self.echo {
            // A refused echo (queue full) is fine: the peer just gets fewer frames back.
            let _ = t.send_frame(frame);
        }
        if let Some(layer) = upgrade {
            // The server's echo of STARTTLS goes out in plaintext, below the new layer; the
            // client wraps when that echo arrives.
            t.wrap(layer());
            self.seen.lock().unwrap().wrapped = true;
        }
        Ok(())
    }

    fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
        let mut seen = self.seen.lock().unwrap();
        seen.closes.push(reason.to_string());
        seen.timed_out |= matches!(reason, CloseReason::LingerTimeout);
    }
}

fn stream_scenario(net: &mut Net) {
    let seed = net.seed();
    let (make, kind) = framing(net.rng().next_u64());
    let tls = match seed % 4 {
        0 | 2 => Tls::Off,
        1 => Tls::FromTheStart,
        _ => Tls::Starttls,
    };
    // Over TLS, most faults land in the first steps: inside the handshake.
    net.faults_mut().fault_window = Duration::from_millis(if tls == Tls::Off { 400 } else { 60 });
    let (server_tls, client_tls) = tendril_core::testkit::tls::pair(seed);
    let server_layer = move || TlsLayer::server(server_tls.clone()).unwrap();
    let client_layer = move || {
        TlsLayer::client(
            client_tls.clone(),
            tendril_core::testkit::tls::server_name(),
        )
        .unwrap()
    };
    let mut config = tendril_core::Config::default();
    config.high_watermark = 16 * 1024 + net.rng().below(64 * 1024) as usize;
    config.low_watermark = config.high_watermark / 4;
    // No handshake timeout: a side left in a handshake by its peer's hang-up must close from
    // the EOF alone (the timeout would end it too, and hide the bug).
    config.handshake_timeout = None;
    let new_tendril = move |layer: &dyn Fn() -> TlsLayer| {
        let mut tendril = Tendril::with_boxed(Proto::TCP, make(), make()).with_config(config);
        if tls == Tls::FromTheStart {
            tendril.wrap(layer());
        }
        tendril
    };
    let new_side =
        move |seen: &Arc<Mutex<Seen>>, echo, layer: Box<dyn Fn() -> TlsLayer + Send>| Side {
            seen: seen.clone(),
            echo,
            upgrade: (tls == Tls::Starttls).then(|| Box::new(layer) as Box<_>),
        };
    let client_seen = Arc::new(Mutex::new(Seen::default()));
    let server_seen = Arc::new(Mutex::new(Seen::default()));
    let listener = {
        let (seen, layer) = (server_seen.clone(), server_layer.clone());
        net.listen(
            SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 7)),
            move || new_tendril(&layer),
            move |_: &mut Tendril| Ok(new_side(&seen, true, Box::new(server_layer.clone()))),
        )
    };
    let client = new_tendril(&client_layer);
    let side = new_side(&client_seen, false, Box::new(client_layer));
    let link = net.connect(&listener, client, side);
    let server = link.server.expect("the acceptor takes every connection");
    let ends = [link.client, server];
    let seen = [&client_seen, &server_seen];
    let mut sent: Vec<Bytes> = Vec::new();
    let total = 1 + net.rng().below(200);
    let finish_client = net.rng().chance(50);
    for _ in 0..20_000u64 {
        // The client sends what it still has, as far as back-pressure allows; after STARTTLS,
        // nothing until the server's echo made it wrap.
        let awaiting_tls =
            tls == Tls::Starttls && !sent.is_empty() && !client_seen.lock().unwrap().wrapped;
        let open = net.get(link.client).0.is_open();
        if (sent.len() as u64) < total && net.rng().chance(60) && open && !awaiting_tls {
            let f = if tls == Tls::Starttls && sent.is_empty() {
                Bytes::from_static(STARTTLS)
            } else {
                frame(net.rng(), kind, sent.len() as u64)
            };
            if net.get_mut(link.client).0.send_frame(f.clone()).is_ok() {
                sent.push(f);
            }
        } else if sent.len() as u64 == total && open {
            if finish_client {
                net.get_mut(link.client).0.finish();
            } else if net.rng().chance(5) {
                net.get_mut(link.client).0.close();
            }
        }
        net.step();
        for (i, &end) in ends.iter().enumerate() {
            // Bounded: never more than a frame plus what arrived in its last read (over TLS,
            // plus the one record that read may have completed).
            let buffered = net.get(end).0.buffered().len();
            let record = if tls == Tls::Off { 0 } else { 16 * 1024 };
            let last_read = net.last_read(end);
            assert!(
                buffered <= 3100 + 64 + record + last_read,
                "{} buffer grew unbounded: {buffered} bytes, last read {last_read}",
                ["client", "server"][i]
            );
        }
        if ends.iter().all(|&e| net.get(e).0.is_closed()) && net.is_quiet() {
            break;
        }
    }
    // Whatever is left runs on, on virtual time: every end must reach `closed` by itself.
    net.run();
    let disrupted = net.disrupted(link.client);
    let client = seen[0].lock().unwrap();
    let server = seen[1].lock().unwrap();
    for (name, seen) in [("client", &client), ("server", &server)] {
        assert!(
            seen.closes.len() == 1,
            "{name} ({tls:?}) closed {} times: {:?}",
            seen.closes.len(),
            seen.closes
        );
    }
    // Nothing is stuck: no end waits for its linger to run out.
    assert!(
        !client.timed_out && !server.timed_out,
        "{tls:?}: a close had to time out (closes: client {:?}, server {:?})",
        client.closes,
        server.closes
    );
    if disrupted {
        DISRUPTED.fetch_add(1, Ordering::Relaxed);
    }
    if tls != Tls::Off {
        TLS_RUNS.fetch_add(1, Ordering::Relaxed);
    }
    // Frames arrive in order, once: the server saw a prefix of what was sent.
    assert!(server.frames.len() <= sent.len());
    // After a hang-up mid-frame the last frame may come cut short: a line ends at the EOF.
    let same = |got: &[Bytes], want: &[Bytes], i: usize| {
        got[i] == want[i] || disrupted && i + 1 == got.len() && want[i].starts_with(&got[i])
    };
    if let Some(i) = (0..server.frames.len()).find(|&i| !same(&server.frames, &sent, i)) {
        panic!(
            "server frames out of order ({tls:?}, {kind}): frame {i} of {} is {:?}, sent {:?}; \
             closes: client {:?}, server {:?}",
            server.frames.len(),
            &server.frames[i][..server.frames[i].len().min(24)],
            &sent[i][..sent[i].len().min(24)],
            client.closes,
            server.closes
        );
    }
    // The client's echoes are a prefix of what the server received.
    assert!(client.frames.len() <= server.frames.len());
    assert!(
        (0..client.frames.len()).all(|i| same(&client.frames, &server.frames, i)),
        "echo out of order"
    );
    // A clean close loses nothing.
    if server
        .closes
        .first()
        .is_some_and(|r| r == "closed by the peer")
        && !disrupted
    {
        assert_eq!(server.frames.len(), sent.len(), "a clean close lost frames");
        CLEAN.fetch_add(1, Ordering::Relaxed);
    }
}

fn datagram_scenario(net: &mut Net) {
    let peers: Vec<SocketAddr> = (0..1 + net.rng().below(20))
        .map(|i| SocketAddr::from((Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8), 5000)))
        .collect();
    let seen: Arc<Mutex<Vec<(SocketAddr, Bytes)>>> = Arc::default();
    struct Note {
        seen: Arc<Mutex<Vec<(SocketAddr, Bytes)>>>,
        peer: SocketAddr,
    }
    impl Application for Note {
        fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            self.seen.lock().unwrap().push((self.peer, frame.clone()));
            let _ = t.send_frame(frame);
            Ok(())
        }
    }
    let mut config = TrackerConfig::default();
    config.max_peers = 1 + net.rng().below(25) as usize;
    config.idle_timeout = Duration::from_millis(50 + net.rng().below(500));
    let notes = seen.clone();
    let tracker = Tracker::new(
        Proto::UDP,
        config,
        || (Identity::new().boxed(), Identity::new().boxed()),
        move |t: &mut Tendril| {
            let peer = t.remote_addr().ip().ok_or_else(|| Reject::new("not IP"))?;
            Ok(Note {
                seen: notes.clone(),
                peer,
            })
        },
    );
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
    let socket = net.udp(local, tracker);
    for _ in 0..2000u64 {
        if net.rng().chance(50) {
            let peer = peers[net.rng().below(peers.len() as u64) as usize];
            // Each datagram names its sender, so misrouting shows.
            let body = format!("{peer}/{}", net.rng().next_u64());
            net.send_datagram(peer, local, body);
        }
        net.step();
        for &peer in &peers {
            for (from, reply) in net.inbox(peer) {
                let text = String::from_utf8_lossy(&reply);
                assert_eq!(from, local);
                assert!(
                    text.starts_with(&format!("{peer}/")),
                    "reply for {text} went to {peer}"
                );
            }
        }
        assert!(net.get(socket).len() <= config.max_peers);
    }
    for (peer, frame) in seen.lock().unwrap().iter() {
        let text = String::from_utf8_lossy(frame);
        assert!(
            text.starts_with(&format!("{peer}/")),
            "{text} delivered as from {peer}"
        );
    }
}

/// How runs ended, to show the invariants were exercised (printed with `--nocapture`).
static CLEAN: AtomicU64 = AtomicU64::new(0);
static DISRUPTED: AtomicU64 = AtomicU64::new(0);
static TLS_RUNS: AtomicU64 = AtomicU64::new(0);

#[test]
fn seeded_simulation_keeps_every_invariant() {
    let seeds = 400;
    check(Faults::hostile(), seeds, |net| {
        stream_scenario(net);
        datagram_scenario(net);
    });
    if std::env::var(tendril_core::testkit::net::SEED_VAR).is_ok() {
        return;
    }
    let seeds = std::env::var(tendril_core::testkit::net::SEEDS_VAR)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(seeds);
    let (clean, disrupted, tls) = (
        CLEAN.load(Ordering::Relaxed),
        DISRUPTED.load(Ordering::Relaxed),
        TLS_RUNS.load(Ordering::Relaxed),
    );
    eprintln!(
        "{seeds} seeds: {clean} clean closes with every frame delivered, {disrupted} resets or \
         hang-ups, {tls} over TLS"
    );
    assert!(seeds < 50 || tls >= seeds / 2, "too few TLS runs: {tls}");
    assert!(
        seeds < 50 || clean > seeds / 4,
        "too few runs reached a clean close: {clean}"
    );
    assert!(
        seeds < 50 || disrupted > seeds / 10,
        "too few faults: {disrupted}"
    );
}
