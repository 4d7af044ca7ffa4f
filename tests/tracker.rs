//! The datagram connection tracker, in virtual time: accept, remembered rejections, idle expiry,
//! floods of new sources, IPv6, lookup.

mod kit;

use bytes::Bytes;
use core::time::Duration;
use kit::{closed, log, texts, Recorder, SharedLog};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tendril_core::tracker::{Tracker, TrackerConfig, TrackerEvent};
use tendril_core::{Addr, Framer, Identity, LengthPrefixed, Proto, Reject, Tendril};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn identity() -> (
    tendril_core::BoxFramer<Bytes>,
    tendril_core::BoxFramer<Bytes>,
) {
    (Identity::new().boxed(), Identity::new().boxed())
}

/// A tracker whose peers echo and log into `log`; peers on port 666 are rejected.
fn echo_tracker(
    config: TrackerConfig,
    log: &SharedLog,
    asked: Arc<AtomicUsize>,
) -> Tracker<Bytes, Bytes, Recorder> {
    let log = log.clone();
    Tracker::new(Proto::UDP, config, identity, move |t: &mut Tendril| {
        asked.fetch_add(1, Ordering::Relaxed);
        if t.remote_addr().ip().is_some_and(|a| a.port() == 666) {
            return Err(Reject::new("port 666 is not welcome"));
        }
        Ok(Recorder::echo(&log))
    })
}

const LOCAL: &str = "127.0.0.1:5353";

#[test]
fn a_new_peer_is_accepted_and_its_datagrams_are_framed_one_by_one() {
    let l = log();
    let asked = Arc::new(AtomicUsize::new(0));
    let mut tracker = echo_tracker(TrackerConfig::default(), &l, asked.clone());
    let peer = addr("127.0.0.1:4000");
    tracker.handle_datagram(secs(0), addr(LOCAL), peer, b"one", false);
    tracker.handle_datagram(secs(1), addr(LOCAL), peer, b"two", false);
    tracker.handle_datagram(secs(1), addr(LOCAL), peer, b"", false);
    assert_eq!(texts(&l), ["one", "two"], "an empty datagram is no frame");
    assert_eq!(asked.load(Ordering::Relaxed), 1);
    let replies: Vec<_> = std::iter::from_fn(|| tracker.poll_transmit()).collect();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0].remote, Addr::Ip(peer));
    assert_eq!(replies[0].local, Addr::Ip(addr(LOCAL)));
    assert!(matches!(
        tracker.poll_event(),
        Some(TrackerEvent::Accepted { .. })
    ));
    let id = tracker.lookup(&addr(LOCAL).into(), &peer.into()).unwrap();
    assert_eq!(tracker.get(id).unwrap().stats().frames_received, 2);
}

#[test]
fn a_rejection_is_remembered_for_its_ttl() {
    let l = log();
    let asked = Arc::new(AtomicUsize::new(0));
    let mut config = TrackerConfig::default();
    config.reject_ttl = secs(10);
    let mut tracker = echo_tracker(config, &l, asked.clone());
    let bad = addr("127.0.0.1:666");
    for i in 0..100 {
        tracker.handle_datagram(Duration::from_millis(i), addr(LOCAL), bad, b"x", false);
    }
    assert_eq!(
        asked.load(Ordering::Relaxed),
        1,
        "the acceptor was asked once"
    );
    assert!(tracker.poll_transmit().is_none());
    assert_eq!(tracker.rejected_len(), 1);
    assert_eq!(tracker.poll_timeout(), Some(secs(10)));
    tracker.handle_timeout(secs(10));
    assert_eq!(tracker.rejected_len(), 0);
    tracker.handle_datagram(secs(11), addr(LOCAL), bad, b"x", false);
    assert_eq!(
        asked.load(Ordering::Relaxed),
        2,
        "asked again after the TTL"
    );
}

#[test]
fn idle_peers_expire_in_virtual_time_and_closed_is_called_once() {
    let l = log();
    let mut config = TrackerConfig::default();
    config.idle_timeout = secs(30);
    let mut tracker = echo_tracker(config, &l, Arc::default());
    let (a, b) = (addr("127.0.0.1:4001"), addr("127.0.0.1:4002"));
    tracker.handle_datagram(secs(0), addr(LOCAL), a, b"a", false);
    tracker.handle_datagram(secs(20), addr(LOCAL), b, b"b", false);
    assert_eq!(tracker.poll_timeout(), Some(secs(30)));
    tracker.handle_timeout(secs(30));
    assert_eq!(tracker.len(), 1, "a expired, b did not");
    assert_eq!(closed(&l), ["idle timeout"]);
    tracker.handle_datagram(secs(40), addr(LOCAL), b, b"b again", false);
    tracker.handle_timeout(secs(50));
    assert_eq!(tracker.len(), 1, "activity postponed b's expiry");
    tracker.handle_timeout(secs(70));
    assert!(tracker.is_empty());
    assert_eq!(closed(&l), ["idle timeout", "idle timeout"]);
}

#[test]
fn a_flood_of_new_sources_does_not_evict_established_peers() {
    let l = log();
    let mut config = TrackerConfig::default();
    config.max_peers = 10_000;
    // A listener that only echoes to the first 100 peers: those become established.
    let log2 = l.clone();
    let mut tracker = Tracker::new(Proto::UDP, config, identity, move |t: &mut Tendril| {
        let port = t.remote_addr().ip().map_or(0, |a| a.port());
        let mut app = Recorder::new(&log2);
        app.echo = port < 100;
        Ok::<_, Reject>(app)
    });
    let local = addr(LOCAL);
    for port in 0..100u16 {
        let peer = SocketAddr::new("10.0.0.1".parse().unwrap(), port);
        tracker.handle_datagram(secs(0), local, peer, b"hello", false);
    }
    // 100k spoofed sources, each sending one datagram.
    for i in 0..100_000u32 {
        let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i);
        tracker.handle_datagram(
            secs(1),
            local,
            SocketAddr::new(ip.into(), 9000),
            b"spoof",
            false,
        );
        assert!(tracker.len() <= 10_000);
    }
    assert_eq!(tracker.len(), 10_000);
    for port in 0..100u16 {
        let peer = SocketAddr::new("10.0.0.1".parse().unwrap(), port);
        assert!(
            tracker.lookup(&local.into(), &peer.into()).is_some(),
            "established peer {peer} was evicted"
        );
    }
    while tracker.poll_transmit().is_some() {}
    let peer = SocketAddr::new("10.0.0.1".parse().unwrap(), 7);
    tracker.handle_datagram(secs(2), local, peer, b"still here", false);
    assert_eq!(tracker.poll_transmit().unwrap().data, "still here");
    let evicted = closed(&l)
        .iter()
        .filter(|r| *r == "evicted from the connection table")
        .count();
    assert_eq!(evicted, 100_000 + 100 - 10_000);
}

#[test]
fn ipv6_peers_and_the_local_address_are_part_of_the_key() {
    let l = log();
    let mut tracker = echo_tracker(TrackerConfig::default(), &l, Arc::default());
    let peer = addr("[::1]:4000");
    let (local_a, local_b) = (addr("[::1]:53"), addr("[2001:db8::1]:53"));
    tracker.handle_datagram(secs(0), local_a, peer, b"to a", false);
    tracker.handle_datagram(secs(0), local_b, peer, b"to b", false);
    assert_eq!(tracker.len(), 2, "one peer per (local, remote)");
    let a = tracker.lookup(&local_a.into(), &peer.into()).unwrap();
    let b = tracker.lookup(&local_b.into(), &peer.into()).unwrap();
    assert_ne!(a, b);
    let first = tracker.poll_transmit().unwrap();
    assert_eq!(
        (first.local, first.remote),
        (Addr::Ip(local_a), Addr::Ip(peer))
    );
    let second = tracker.poll_transmit().unwrap();
    assert_eq!(
        second.local,
        Addr::Ip(local_b),
        "replies leave from the address that received"
    );
}

#[test]
fn an_ipv4_mapped_peer_matches_its_ipv4_form() {
    let l = log();
    let mut tracker = echo_tracker(TrackerConfig::default(), &l, Arc::default());
    let local = addr("127.0.0.1:53");
    tracker.handle_datagram(secs(0), local, addr("127.0.0.1:4000"), b"v4", false);
    tracker.handle_datagram(
        secs(0),
        local,
        addr("[::ffff:127.0.0.1]:4000"),
        b"mapped",
        false,
    );
    assert_eq!(tracker.len(), 1);
}

#[test]
fn a_truncated_datagram_is_reported_not_delivered_short() {
    let l = log();
    let mut tracker = echo_tracker(TrackerConfig::default(), &l, Arc::default());
    tracker.handle_datagram(secs(0), addr(LOCAL), addr("127.0.0.1:4000"), b"cut", true);
    assert!(texts(&l).is_empty());
    assert_eq!(l.lock().unwrap().events, ["DatagramTruncated"]);
}

#[test]
fn a_bad_datagram_is_skipped_without_ending_the_peer() {
    let l = log();
    let log2 = l.clone();
    let mut tracker = Tracker::new(
        Proto::UDP,
        TrackerConfig::default(),
        || (LengthPrefixed::u8().boxed(), LengthPrefixed::u8().boxed()),
        move |_: &mut Tendril| Ok::<_, Reject>(Recorder::new(&log2)),
    );
    let peer = addr("127.0.0.1:4000");
    tracker.handle_datagram(secs(0), addr(LOCAL), peer, b"\x09short", false);
    tracker.handle_datagram(secs(0), addr(LOCAL), peer, b"\x02ok", false);
    assert_eq!(texts(&l), ["ok"]);
    assert_eq!(tracker.len(), 1);
    assert!(l.lock().unwrap().events[0].starts_with("FrameSkipped(Truncated"));
}

#[test]
fn connect_tracks_an_outgoing_peer_and_replies_reach_it() {
    let l = log();
    let mut tracker = echo_tracker(TrackerConfig::default(), &l, Arc::default());
    let (local, server) = (addr("[::1]:40000"), addr("[::1]:53"));
    let client_log = log();
    let id = tracker
        .connect(secs(0), local.into(), server.into(), |t| {
            t.set_recv_framer(Identity::new());
            Ok(Recorder::new(&client_log))
        })
        .unwrap();
    tracker.with(secs(0), id, |t, _| t.send_frame("query".into()).unwrap());
    let out = tracker.poll_transmit().unwrap();
    assert_eq!(
        (out.remote, out.data),
        (Addr::Ip(server), Bytes::from("query"))
    );
    tracker.handle_datagram(secs(1), local, server, b"answer", false);
    assert_eq!(texts(&client_log), ["answer"]);
}
