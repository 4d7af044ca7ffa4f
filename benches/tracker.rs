//! Datagrams per second through the UDP connection tracker, with an echo application.
//!
//! Run with `cargo bench --bench tracker`. The table is filled with 1k, 100k and 1M peers, each
//! of which sent a datagram and got its echo (established, idle); then datagrams from those
//! peers, in a fixed random order, go through `Tracker::handle_datagram` and the echo comes out
//! of `Tracker::poll_transmit`. One datagram is one element: the figure is datagrams/s on one
//! core (the tracker is single-threaded; one per socket per thread). `echo_datagram` hands them
//! over one by one (`handle_datagram`), `echo_batch32` 32 at a time (`handle_datagrams`, as a
//! driver does after one `recvmmsg`).
//!
//! Memory per idle peer is measured in `benches/alloc.rs` (a counting allocator would distort
//! these timings).

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
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

/// The peers in a fixed pseudo-random order, so consecutive datagrams hit unrelated slots.
fn shuffled(n: usize) -> Vec<SocketAddr> {
    let mut order: Vec<SocketAddr> = (0..n).map(peer).collect();
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
                let remote = order[next];
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
                    let remote = order[next];
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
criterion_main!(benches);
