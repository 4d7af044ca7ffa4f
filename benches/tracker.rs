//! Datagrams per second through the UDP connection tracker, with an echo application.
//!
//! Run with `cargo bench --bench tracker`. The table is filled with 1k, 100k and 1M peers, each
//! of which sent a datagram and got its echo (established, idle); then datagrams from those
//! peers, in a fixed random order, go through `Tracker::handle_datagram` and the echo comes out
//! of `Tracker::poll_transmit`. One datagram is one element: the figure is datagrams/s on one
//! core (the tracker is single-threaded; one per socket per thread). `echo_datagram` hands them
//! over one by one (`handle_datagram`), `echo_batch32` 32 at a time (`handle_datagrams`, as a
//! driver does after one `recvmmsg`). The peers share their `Identity` framers
//! (`TrackerConfig::stateless_framers`); `TRACKER_OWN_FRAMERS=1` gives each its own, as the
//! default configuration does.
//!
//! Memory per idle peer is measured in `benches/alloc.rs` (a counting allocator would distort
//! these timings).
//!
//! For callgrind's exact counts, `TRACKER_COUNT=<peers>,<datagrams>` skips criterion: it fills
//! the table, sends one datagram from every peer (warm-up, as in the timed runs), then
//! `<datagrams>` more in the same order inside `measured`, and exits. Count only that function:
//!
//! ```text
//! TRACKER_COUNT=100000,100000 valgrind --tool=callgrind --cache-sim=yes \
//!     --toggle-collect='*measured*' target/release/deps/tracker-<hash>
//! ```

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use tendril_core::tracker::{Datagram, Tracker, TrackerConfig};
use tendril_core::{AppError, Application, Framer, Identity, Proto, Reject, Tendril};

/// Table sizes.
const PEERS: [usize; 3] = [1_000, 100_000, 1_000_000];
/// Datagrams per batch in `echo_batch`: what one `recvmmsg` returns at most through `quinn-udp`.
const BATCH: usize = 32;
/// The payload of every datagram (a DNS query is about this long).
const PAYLOAD: [u8; 64] = [b'q'; 64];

/// Sends every frame back.
struct Echo;

impl Application for Echo {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        t.send_frame(frame)?;
        Ok(())
    }
}

type EchoTracker = Tracker<Bytes, Bytes, Echo>;

/// The time passed to the tracker: fixed, so no peer ever idles out during a run.
const NOW: Duration = Duration::from_secs(1);

fn local() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 53))
}

/// The `i`th peer's address (10.0.0.0/8 and a port: a million distinct sources).
fn peer(i: usize) -> SocketAddr {
    let i = i as u32;
    SocketAddr::from((
        Ipv4Addr::from(0x0a00_0000 + (i >> 4)),
        4000 + (i & 15) as u16,
    ))
}

/// A tracker holding `n` established, idle echo peers.
fn filled(n: usize) -> EchoTracker {
    let mut config = TrackerConfig::default();
    config.max_peers = n + 1024;
    // `Identity` keeps no state between datagrams: the peers share one pair of framers.
    // `TRACKER_OWN_FRAMERS=1` gives each peer its own (the default configuration).
    config.stateless_framers = std::env::var_os("TRACKER_OWN_FRAMERS").is_none();
    let mut tracker = Tracker::new(
        Proto::UDP,
        config,
        || (Identity::new().boxed(), Identity::new().boxed()),
        |_: &mut Tendril| Ok::<_, Reject>(Echo),
    );
    for i in 0..n {
        tracker.handle_datagram(NOW, local(), peer(i), &PAYLOAD, false);
        while tracker.poll_transmit().is_some() {}
        while tracker.poll_event().is_some() {}
    }
    assert_eq!(tracker.len(), n);
    tracker
}

/// The peers (their numbers for `peer`) in a fixed pseudo-random order, so consecutive
/// datagrams hit unrelated slots. Four bytes each, so reading the order adds little (1/16) to
/// the count of cache misses per datagram.
fn shuffled(n: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

fn tracker(c: &mut Criterion) {
    // Under `cargo test --benches` (no `--bench` flag) check the path on a small table only.
    let benching = std::env::args().any(|a| a == "--bench");
    let mut group = c.benchmark_group("tracker");
    group.throughput(Throughput::Elements(1));
    for n in PEERS {
        if !benching && n > 1_000 {
            continue;
        }
        let started = Instant::now();
        let mut tracker = filled(n);
        eprintln!(
            "tracker: filled {n} peers in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        let order = shuffled(n);
        let local = local();
        let mut next = 0;
        group.bench_function(format!("echo_datagram/{n}_peers"), |b| {
            b.iter(|| {
                let remote = peer(order[next] as usize);
                next += 1;
                if next == order.len() {
                    next = 0;
                }
                tracker.handle_datagram(NOW, local, remote, &PAYLOAD, false);
                while let Some(transmit) = tracker.poll_transmit() {
                    black_box(transmit);
                }
            })
        });
        // The same in batches of what one `recvmmsg` returns, through `handle_datagrams`.
        group.throughput(Throughput::Elements(BATCH as u64));
        let mut next = 0;
        group.bench_function(format!("echo_batch{BATCH}/{n}_peers"), |b| {
            b.iter(|| {
                let batch: [Datagram; BATCH] = core::array::from_fn(|_| {
                    let remote = peer(order[next] as usize);
                    next += 1;
                    if next == order.len() {
                        next = 0;
                    }
                    Datagram::new(local, remote, &PAYLOAD)
                });
                tracker.handle_datagrams(NOW, batch);
                while let Some(transmit) = tracker.poll_transmit() {
                    black_box(transmit);
                }
            })
        });
        group.throughput(Throughput::Elements(1));
        // Every datagram came from a tracked peer and was answered: nothing new was admitted.
        assert_eq!(tracker.len(), n);
        assert!(tracker.poll_event().is_none());
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots();
    targets = tracker
}

/// `<datagrams>` echoed datagrams from the peers in `order`, starting at `*next`: the body of
/// `echo_datagram`, counted alone under callgrind's `--toggle-collect`.
#[inline(never)]
fn measured(tracker: &mut EchoTracker, order: &[u32], next: &mut usize, datagrams: usize) {
    let local = local();
    for _ in 0..datagrams {
        let remote = peer(order[*next] as usize);
        *next += 1;
        if *next == order.len() {
            *next = 0;
        }
        tracker.handle_datagram(NOW, local, remote, &PAYLOAD, false);
        while let Some(transmit) = tracker.poll_transmit() {
            black_box(transmit);
        }
    }
}

/// `TRACKER_COUNT=<peers>,<datagrams>`: one warm-up pass over every peer, then `measured`.
fn count(spec: &str) {
    let mut parts = spec.split(',').map(|p| p.trim().parse::<usize>());
    let (Some(Ok(n)), Some(Ok(datagrams))) = (parts.next(), parts.next()) else {
        panic!("TRACKER_COUNT=<peers>,<datagrams>, not {spec:?}");
    };
    let mut tracker = filled(n);
    let order = shuffled(n);
    let mut next = 0;
    let warm = |tracker: &mut EchoTracker| {
        for &i in &order {
            tracker.handle_datagram(NOW, local(), peer(i as usize), &PAYLOAD, false);
            while let Some(transmit) = tracker.poll_transmit() {
                black_box(transmit);
            }
        }
    };
    warm(&mut tracker);
    measured(&mut tracker, &order, &mut next, datagrams);
    assert_eq!(tracker.len(), n);
    eprintln!("tracker: {datagrams} datagrams over {n} peers");
}

fn main() {
    if let Ok(spec) = std::env::var("TRACKER_COUNT") {
        count(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
