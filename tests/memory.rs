//! Memory held by idle connections and tracked peers (with framers of their own, and on shared
//! stateless framers), and allocations per datagram, measured with a counting allocator.
//! Run `cargo test --test memory -- --nocapture` to see the figures.

use bytes::Bytes;
use core::time::Duration;
use std::net::{Ipv4Addr, SocketAddr};
use tendril_core::tracker::{Tracker, TrackerConfig};
use tendril_core::{AppError, Application, Framer, Identity, Line, Proto, Reject, Tendril};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

struct Echo;

impl Application for Echo {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        t.send_frame(frame)?;
        Ok(())
    }
}

fn live_bytes() -> usize {
    dhat::HeapStats::get().curr_bytes
}

/// Both measurements in one test: dhat's profiler is process-wide.
#[test]
fn idle_connections_and_peers_hold_little_memory() {
    let _profiler = dhat::Profiler::builder().testing().build();

    // TCP: 1,000 line-framed tendrils that each echoed a line, then went idle.
    let before = live_bytes();
    let mut tendrils = Vec::new();
    for _ in 0..1000 {
        let mut t: Tendril = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf());
        t.handle_data(Duration::ZERO, b"hello\r\n");
        t.dispatch(&mut Echo);
        let n = t.outgoing_len();
        bytes::Buf::advance(t.outgoing(), n);
        t.release_idle_buffers();
        tendrils.push((t, Echo));
    }
    // The Vec holds each tendril inline, so this counts the struct and everything it owns.
    let per_tcp = (live_bytes() - before) / 1000;
    eprintln!(
        "idle TCP tendril: {per_tcp} bytes (inline {} + boxed framers; buffers released)",
        std::mem::size_of::<Tendril>()
    );
    assert!(per_tcp <= 4096, "{per_tcp} bytes per idle TCP connection");
    // 640 B in benches/alloc.rs, which counts no `Vec` slack; here the `Vec` of 1,000 has room
    // for 1,024, about 13 B more each. A field of 16 bytes more in `Tendril` fails this.
    assert!(
        per_tcp <= 660,
        "{per_tcp} bytes per idle TCP connection: more than the 640 B kept since the first round"
    );
    drop(tendrils);

    // UDP: 100,000 peers that sent one datagram each and got a reply, each with framers of
    // its own (the default) ...
    let (tracker, per_udp) = idle_peers(TrackerConfig::default());
    eprintln!("idle tracked UDP peer: {per_udp} bytes (table, slot, tendril, framers, timer)");
    assert!(
        per_udp <= 256,
        "{per_udp} bytes per idle UDP peer (goal: 256)"
    );
    drop(tracker);

    // ... and on shared stateless framers (`TrackerConfig::stateless_framers`).
    let mut config = TrackerConfig::default();
    config.stateless_framers = true;
    let (mut tracker, per_peer) = idle_peers(config);
    eprintln!("idle tracked UDP peer on shared framers: {per_peer} bytes");
    assert!(per_peer <= 192, "{per_peer} bytes per idle UDP peer");

    // Steady state on shared framers: every peer again, twice; the second round must not
    // allocate.
    let round = |tracker: &mut Tracker<Bytes, Bytes, Echo>| {
        for i in (0..PEERS).rev() {
            tracker.handle_datagram(NOW, LOCAL, peer(i), &[b'q'; 64], false);
            while tracker.poll_transmit().is_some() {}
        }
    };
    round(&mut tracker);
    let allocated = dhat::HeapStats::get().total_blocks;
    round(&mut tracker);
    let per_datagram = (dhat::HeapStats::get().total_blocks - allocated) as f64 / f64::from(PEERS);
    eprintln!("allocations per datagram on shared framers: {per_datagram}");
    assert_eq!(per_datagram, 0.0);
    assert_eq!(tracker.len(), PEERS as usize);
}

/// Tracked UDP peers for the memory figures.
const PEERS: u32 = 100_000;
const LOCAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 53);
const NOW: Duration = Duration::from_secs(1);

fn peer(i: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i), 4000))
}

/// A tracker on `config` with [`PEERS`] peers that each sent one datagram and got a reply, and
/// the heap bytes each of them holds.
fn idle_peers(mut config: TrackerConfig) -> (Tracker<Bytes, Bytes, Echo>, usize) {
    let before = live_bytes();
    config.max_peers = 200_000;
    let mut tracker = Tracker::new(
        Proto::UDP,
        config,
        || (Identity::new().boxed(), Identity::new().boxed()),
        |_: &mut Tendril| Ok::<_, Reject>(Echo),
    );
    for i in 0..PEERS {
        tracker.handle_datagram(NOW, LOCAL, peer(i), b"q", false);
        while tracker.poll_transmit().is_some() {}
        while tracker.poll_event().is_some() {}
    }
    let per_peer = (live_bytes() - before) / PEERS as usize;
    (tracker, per_peer)
}
