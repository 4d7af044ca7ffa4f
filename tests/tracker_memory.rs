//! Heap held per idle tracked peer and allocations per datagram with shared stateless framers
//! (`TrackerConfig::stateless_framers`), measured with a counting allocator. The default
//! configuration is measured in `tests/memory.rs`. Run with `-- --nocapture` to see the figures.

use bytes::Bytes;
use core::time::Duration;
use std::net::{Ipv4Addr, SocketAddr};
use tendril_core::tracker::{Tracker, TrackerConfig};
use tendril_core::{AppError, Application, Framer, Identity, Proto, Reject, Tendril};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

struct Echo;

impl Application for Echo {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        t.send_frame(frame)?;
        Ok(())
    }
}

fn peer(i: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i), 4000))
}

/// Both measurements in one test: dhat's profiler is process-wide.
#[test]
fn idle_peers_on_shared_framers_hold_little_memory_and_datagrams_allocate_nothing() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let peers = 100_000u32;
    let before = dhat::HeapStats::get().curr_bytes;
    let mut config = TrackerConfig::default();
    config.max_peers = 200_000;
    config.stateless_framers = true;
    let mut tracker = Tracker::new(
        Proto::UDP,
        config,
        || (Identity::new().boxed(), Identity::new().boxed()),
        |_: &mut Tendril| Ok::<_, Reject>(Echo),
    );
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
    let now = Duration::from_secs(1);
    for i in 0..peers {
        tracker.handle_datagram(now, local, peer(i), b"q", false);
        while tracker.poll_transmit().is_some() {}
        while tracker.poll_event().is_some() {}
    }
    let per_peer = (dhat::HeapStats::get().curr_bytes - before) / peers as usize;
    eprintln!("idle tracked UDP peer on shared framers: {per_peer} bytes");
    assert!(per_peer <= 192, "{per_peer} bytes per idle UDP peer");

    // Steady state: every peer again, twice; the second round must not allocate.
    let round = |tracker: &mut Tracker<Bytes, Bytes, Echo>| {
        for i in (0..peers).rev() {
            tracker.handle_datagram(now, local, peer(i), &[b'q'; 64], false);
            while tracker.poll_transmit().is_some() {}
        }
    };
    round(&mut tracker);
    let allocated = dhat::HeapStats::get().total_blocks;
    round(&mut tracker);
    let per_datagram = (dhat::HeapStats::get().total_blocks - allocated) as f64 / f64::from(peers);
    eprintln!("allocations per datagram on shared framers: {per_datagram}");
    assert_eq!(per_datagram, 0.0);
    assert_eq!(tracker.len(), peers as usize);
}
