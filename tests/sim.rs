//! Deterministic simulation: many tendrils over a seeded, faulty virtual network.
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
//! `cargo test --test sim` runs `TENDRIL_SIM_SEEDS` seeds (default 400, half of them over TLS). A failure names its
//! seed; replay it alone with `TENDRIL_SIM_SEED=<seed> cargo test --test sim -- --nocapture`.
//! It needs the `rustls` feature (the README's test command turns every feature on).
#![cfg(feature = "rustls")]

use bytes::{Buf, Bytes};
use core::time::Duration;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tendril_core::tls::TlsLayer;
use tendril_core::tracker::{Tracker, TrackerConfig};
use tendril_core::{
    AppError, Application, BoxFramer, CloseReason, Cobs, Framer, Identity, LengthPrefixed, Line,
    Netstring, Proto, Reject, Tendril,
};

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A framer pair both ends agree on, and frames it can carry.
fn framing(kind: u64) -> (fn() -> BoxFramer<Bytes>, &'static str) {
    match kind % 4 {
        0 => (|| Line::crlf().max_length(4096).boxed(), "line"),
        1 => (|| LengthPrefixed::u16_be().boxed(), "length"),
        2 => (|| Netstring::new().boxed(), "netstring"),
        _ => (|| Cobs::new().boxed(), "cobs"),
    }
}

fn frame(rng: &mut Rng, kind: &str, n: u64) -> Bytes {
    let limit = if rng.chance(10) { 3000 } else { 40 };
    let len = rng.below(limit) as usize;
    let mut body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
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
        self.seen.lock().unwrap().closes.push(reason.to_string());
    }
}

/// One end on the virtual network.
struct End {
    tendril: Tendril,
    app: Side,
    seen: Arc<Mutex<Seen>>,
    fin_sent: bool,
}

/// Bytes in flight one way: (arrival time, bytes), or a FIN / a reset.
enum Packet {
    Data(Bytes),
    Fin,
    Reset,
}

/// How runs ended, to show the invariants were exercised (printed with `--nocapture`).
static CLEAN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static RESET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

static TLS_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static HANG_UPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn stream_scenario(seed: u64) {
    let mut rng = Rng(seed);
    let (make, kind) = framing(rng.next());
    let tls = match seed % 4 {
        0 | 2 => Tls::Off,
        1 => Tls::FromTheStart,
        _ => Tls::Starttls,
    };
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
    config.high_watermark = 16 * 1024 + rng.below(64 * 1024) as usize;
    config.low_watermark = config.high_watermark / 4;
    // No handshake timeout: a side left in a handshake by its peer's hang-up must close from
    // the EOF alone (the timeout would end it too, and hide the bug).
    config.handshake_timeout = None;
    let new_end = |echo: bool, layer: Box<dyn Fn() -> TlsLayer + Send>| {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut tendril = Tendril::with_boxed(Proto::TCP, make(), make())
            .with_config(config)
            .started_at(Duration::ZERO);
        let mut upgrade: Option<Box<dyn FnOnce() -> TlsLayer + Send>> = None;
        match tls {
            Tls::Off => {}
            Tls::FromTheStart => tendril.wrap(layer()),
            Tls::Starttls => upgrade = Some(Box::new(layer)),
        }
        End {
            tendril,
            app: Side {
                seen: seen.clone(),
                echo,
                upgrade,
            },
            seen,
            fin_sent: false,
        }
    };
    let mut ends = [
        new_end(false, Box::new(client_layer)),
        new_end(true, Box::new(server_layer)),
    ];
    let mut wires: [VecDeque<(u64, Packet)>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut sent: Vec<Bytes> = Vec::new();
    let total = 1 + rng.below(200);
    // Over TLS, most faults land in the first steps: inside the handshake.
    let fault_window = if tls == Tls::Off { 400 } else { 60 };
    let reset_at = rng.chance(15).then(|| rng.below(fault_window));
    // A side whose process goes away: its socket is closed, so the peer gets a FIN.
    let hang_up_at = (reset_at.is_none() && rng.chance(15)).then(|| rng.below(fault_window));
    let finish_client = rng.chance(50);
    let mut now = 0u64;
    let mut last_delivery = [0usize; 2];
    let mut hung_up: Option<usize> = None;
    let mut forced = false;
    for step in 0..20_000u64 {
        now += 1;
        let t = Duration::from_millis(now);
        // The client sends what it still has, as far as back-pressure allows; after STARTTLS,
        // nothing until the server's echo made it wrap.
        let awaiting_tls =
            tls == Tls::Starttls && !sent.is_empty() && !ends[0].seen.lock().unwrap().wrapped;
        if (sent.len() as u64) < total
            && rng.chance(60)
            && ends[0].tendril.is_open()
            && !awaiting_tls
        {
            let f = if tls == Tls::Starttls && sent.is_empty() {
                Bytes::from_static(STARTTLS)
            } else {
                frame(&mut rng, kind, sent.len() as u64)
            };
            if ends[0].tendril.send_frame(f.clone()).is_ok() {
                sent.push(f);
            }
        } else if sent.len() as u64 == total && ends[0].tendril.is_open() {
            if finish_client {
                ends[0].tendril.finish();
            } else if rng.chance(5) {
                ends[0].tendril.close();
            }
        }
        if reset_at == Some(step) {
            let victim = rng.below(2) as usize;
            ends[victim].tendril.abort();
            wires[victim].push_back((now, Packet::Reset));
        }
        if hang_up_at == Some(step) {
            let victim = rng.below(2) as usize;
            hung_up = Some(victim);
            ends[victim].tendril.abort();
            ends[victim].tendril.dispatch(&mut ends[victim].app);
            if !ends[victim].fin_sent {
                ends[victim].fin_sent = true;
                wires[victim].push_back((now, Packet::Fin));
            }
        }
        for i in 0..2 {
            let end = &mut ends[i];
            end.tendril.dispatch(&mut end.app);
            // Short writes: the "socket" takes a random part of what is queued.
            let queued = end.tendril.outgoing_len();
            if queued > 0 && !end.tendril.is_closed() {
                let n = 1 + rng.below(queued as u64) as usize;
                let data = end.tendril.outgoing().copy_to_bytes(n);
                let delay = rng.below(5);
                wires[i].push_back((now + delay, Packet::Data(data)));
            }
            if end.tendril.wants_shutdown() && !end.fin_sent {
                end.fin_sent = true;
                end.tendril.handle_shutdown(t);
                wires[i].push_back((now, Packet::Fin));
            }
            end.tendril.handle_timeout(t);
            end.tendril.dispatch(&mut end.app);
            // Bounded: never more than a frame plus what arrived in its last delivery (over
            // TLS, plus the one record that delivery may have completed).
            let buffered = end.tendril.buffered().len();
            let record = if tls == Tls::Off { 0 } else { 16 * 1024 };
            assert!(
                buffered <= 3100 + 64 + record + last_delivery[i],
                "buffer grew unbounded: {buffered} bytes, last delivery {}",
                last_delivery[i]
            );
        }
        // Deliver: in order per direction, possibly split into 1-byte reads.
        for (from, wire) in wires.iter_mut().enumerate() {
            let to = 1 - from;
            while let Some((at, _)) = wire.front() {
                if *at > now || !ends[to].tendril.wants_read() && !ends[to].tendril.is_closed() {
                    break;
                }
                let Some((_, packet)) = wire.pop_front() else {
                    break;
                };
                let end = &mut ends[to];
                if let Packet::Data(data) = &packet {
                    last_delivery[to] = data.len();
                }
                match packet {
                    Packet::Data(data) if rng.chance(20) => {
                        for byte in data.chunks(1) {
                            end.tendril.handle_data(t, byte);
                        }
                    }
                    Packet::Data(data) => end.tendril.handle_data(t, &data),
                    Packet::Fin => end.tendril.handle_eof(t),
                    Packet::Reset => end.tendril.handle_error(t, "connection reset by peer"),
                }
                end.tendril.dispatch(&mut end.app);
            }
        }
        if ends.iter().all(|e| e.tendril.is_closed()) && wires.iter().all(VecDeque::is_empty) {
            break;
        }
        // A stuck pair (both waiting) ends the run: close both sides.
        if step == 19_000 {
            forced = ends.iter().any(|e| !e.tendril.is_closed());
            for end in ends.iter_mut() {
                end.tendril.abort();
                end.tendril.dispatch(&mut end.app);
            }
        }
    }
    let client = ends[0].seen.lock().unwrap();
    let server = ends[1].seen.lock().unwrap();
    for (name, seen) in [("client", &client), ("server", &server)] {
        assert!(
            seen.closes.len() == 1,
            "{name} ({tls:?}) closed {} times: {:?}",
            seen.closes.len(),
            seen.closes
        );
    }
    if let Some(victim) = hung_up {
        // The survivor saw a FIN: it must have closed by itself, with no time limit needed.
        assert!(
            !forced,
            "{tls:?}: the {} outlived its peer's hang-up (closes: client {:?}, server {:?})",
            ["server", "client"][victim],
            client.closes,
            server.closes
        );
        HANG_UPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    if tls != Tls::Off {
        TLS_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    // Frames arrive in order, once: the server saw a prefix of what was sent.
    assert!(server.frames.len() <= sent.len());
    // After a hang-up mid-frame the last frame may come cut short: a line ends at the EOF.
    let same = |got: &[Bytes], want: &[Bytes], i: usize| {
        got[i] == want[i] || hung_up.is_some() && i + 1 == got.len() && want[i].starts_with(&got[i])
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
        && reset_at.is_none()
        && hung_up.is_none()
    {
        assert_eq!(server.frames.len(), sent.len(), "a clean close lost frames");
        CLEAN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    if reset_at.is_some() {
        RESET.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn datagram_scenario(seed: u64) {
    let mut rng = Rng(seed ^ 0x5eed);
    let peers: Vec<SocketAddr> = (0..1 + rng.below(20))
        .map(|i| SocketAddr::from((Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8), 5000)))
        .collect();
    let seen: Arc<Mutex<Vec<(SocketAddr, Bytes)>>> = Arc::default();
    struct Note {
        seen: Arc<Mutex<Vec<(SocketAddr, Bytes)>>>,
        peer: SocketAddr,
        closes: usize,
    }
    impl Application for Note {
        fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            self.seen.lock().unwrap().push((self.peer, frame.clone()));
            let _ = t.send_frame(frame);
            Ok(())
        }
        fn closed(&mut self, _: &Tendril, _: &CloseReason) {
            self.closes += 1;
            assert_eq!(self.closes, 1, "a peer closed twice");
        }
    }
    let mut config = TrackerConfig::default();
    config.max_peers = 1 + rng.below(25) as usize;
    config.idle_timeout = Duration::from_millis(50 + rng.below(500));
    let notes = seen.clone();
    let mut tracker = Tracker::new(
        Proto::UDP,
        config,
        || (Identity::new().boxed(), Identity::new().boxed()),
        move |t: &mut Tendril| {
            let peer = t.remote_addr().ip().ok_or_else(|| Reject::new("not IP"))?;
            Ok(Note {
                seen: notes.clone(),
                peer,
                closes: 0,
            })
        },
    );
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
    let mut in_flight: Vec<(u64, SocketAddr, Bytes)> = Vec::new();
    for now in 0..2000u64 {
        let t = Duration::from_millis(now);
        if rng.chance(50) {
            let peer = peers[rng.below(peers.len() as u64) as usize];
            // Each datagram names its sender, so misrouting shows.
            let body = Bytes::from(format!("{peer}/{}", rng.next()));
            in_flight.push((now + rng.below(20), peer, body.clone()));
            if rng.chance(10) {
                in_flight.push((now + rng.below(20), peer, body)); // duplicated
            }
        }
        // Reordering: deliver whatever is due, in a shuffled order; some are lost.
        let mut due: Vec<(u64, SocketAddr, Bytes)> = Vec::new();
        in_flight.retain(|d| {
            if d.0 <= now {
                due.push(d.clone());
                false
            } else {
                true
            }
        });
        while !due.is_empty() {
            let (_, peer, data) = due.swap_remove(rng.below(due.len() as u64) as usize);
            if rng.chance(10) {
                continue; // lost
            }
            tracker.handle_datagram(t, local, peer, &data, false);
        }
        tracker.handle_timeout(t);
        while let Some(reply) = tracker.poll_transmit() {
            let to = reply.remote.ip().unwrap();
            let text = String::from_utf8_lossy(&reply.data).into_owned();
            assert!(
                text.starts_with(&format!("{to}/")),
                "reply for {text} went to {to}"
            );
        }
        while tracker.poll_event().is_some() {}
        assert!(tracker.len() <= config.max_peers);
    }
    for (peer, frame) in seen.lock().unwrap().iter() {
        let text = String::from_utf8_lossy(frame);
        assert!(
            text.starts_with(&format!("{peer}/")),
            "{text} delivered as from {peer}"
        );
    }
}

fn run(seed: u64) {
    let result = std::panic::catch_unwind(|| {
        stream_scenario(seed);
        datagram_scenario(seed);
    });
    if let Err(e) = result {
        let message = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!(
            "seed {seed} failed: {message}\nreplay: TENDRIL_SIM_SEED={seed} cargo test --test sim -- --nocapture"
        );
    }
}

#[test]
fn seeded_simulation_keeps_every_invariant() {
    if let Ok(seed) = std::env::var("TENDRIL_SIM_SEED") {
        let seed = seed.parse().expect("TENDRIL_SIM_SEED must be a number");
        run(seed);
        return;
    }
    let seeds: u64 = std::env::var("TENDRIL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    for seed in 0..seeds {
        run(seed);
    }
    let (clean, reset) = (
        CLEAN.load(std::sync::atomic::Ordering::Relaxed),
        RESET.load(std::sync::atomic::Ordering::Relaxed),
    );
    let (tls, hang_ups) = (
        TLS_RUNS.load(std::sync::atomic::Ordering::Relaxed),
        HANG_UPS.load(std::sync::atomic::Ordering::Relaxed),
    );
    eprintln!(
        "{seeds} seeds: {clean} clean closes with every frame delivered, {reset} resets, \
         {hang_ups} hang-ups, {tls} over TLS"
    );
    assert!(seeds < 50 || tls >= seeds / 2, "too few TLS runs: {tls}");
    assert!(
        seeds < 50 || clean > seeds / 4,
        "too few runs reached a clean close: {clean}"
    );
}
