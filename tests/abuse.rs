//! Abuse, in memory and virtual time: slowloris, floods of spoofed sources, stalled handshakes.

mod kit;

use core::time::Duration;
use kit::{closed, log, texts, Recorder};
use std::net::{Ipv4Addr, SocketAddr};
use tendril_core::tracker::{Tracker, TrackerConfig};
use tendril_core::{Config, Framer, Identity, Line, Proto, Reject, Tendril};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn guarded() -> Tendril {
    let mut config = Config::default();
    config.idle_timeout = Some(secs(30));
    config.frame_timeout = Some(secs(10));
    Tendril::new(Proto::TCP, Line::crlf(), Line::crlf())
        .with_config(config)
        .started_at(Duration::ZERO)
}

#[test]
fn slowloris_connections_are_closed_while_a_good_client_is_served() {
    // 1,000 attackers each trickle one byte a second of a line that never ends; one good client
    // sends a whole request every second.
    let mut attackers: Vec<(Tendril, Recorder, kit::SharedLog)> = (0..1000)
        .map(|_| {
            let l = log();
            (guarded(), Recorder::new(&l), l)
        })
        .collect();
    let good_log = log();
    let mut good = (guarded(), Recorder::echo(&good_log));
    for second in 1..=20u64 {
        let now = secs(second);
        for (t, app, _) in attackers.iter_mut() {
            if t.is_open() {
                t.handle_data(now, b"x");
            }
            t.dispatch(app);
            t.handle_timeout(now);
            t.dispatch(app);
            if t.wants_shutdown() {
                t.handle_shutdown(now);
                t.dispatch(app);
            }
        }
        good.0
            .handle_data(now, format!("request {second}\r\n").as_bytes());
        good.0.handle_timeout(now);
        good.0.dispatch(&mut good.1);
    }
    for (t, _, l) in &attackers {
        assert!(t.is_closed());
        assert_eq!(closed(l), ["a frame was not finished in time"]);
    }
    assert!(good.0.is_open());
    assert_eq!(texts(&good_log).len(), 20);
}

#[test]
fn a_frame_timeout_restarts_with_each_frame() {
    let l = log();
    let mut app = Recorder::new(&l);
    let mut t = guarded();
    // A frame split over 9 s completes in time; the next one starts its own clock.
    t.handle_data(secs(1), b"par");
    t.dispatch(&mut app);
    assert_eq!(t.poll_timeout(), Some(secs(11)));
    t.handle_data(secs(10), b"t\r\nnext");
    t.dispatch(&mut app);
    assert_eq!(texts(&l), ["part"]);
    assert_eq!(t.poll_timeout(), Some(secs(20)));
    t.handle_timeout(secs(19));
    assert!(t.is_open());
    t.handle_timeout(secs(20));
    t.dispatch(&mut app);
    assert!(!t.is_open());
}

#[test]
fn a_million_spoofed_sources_leave_the_table_bounded_and_established_peers_served() {
    let l = log();
    let mut config = TrackerConfig::default();
    config.max_peers = 1000;
    let log2 = l.clone();
    let mut tracker = Tracker::new(
        Proto::UDP,
        config,
        || (Identity::new().boxed(), Identity::new().boxed()),
        move |t: &mut Tendril| {
            let mut app = Recorder::new(&log2);
            // Only the real clients (port 7) get answers: they become established.
            app.echo = t.remote_addr().ip().is_some_and(|a| a.port() == 7);
            Ok::<_, Reject>(app)
        },
    );
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
    let real: Vec<SocketAddr> = (0..10u8)
        .map(|i| SocketAddr::from((Ipv4Addr::new(192, 0, 2, i), 7)))
        .collect();
    for peer in &real {
        tracker.handle_datagram(secs(0), local, *peer, b"hello", false);
    }
    for i in 0..1_000_000u32 {
        let spoofed = SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i), 9));
        tracker.handle_datagram(secs(1), local, spoofed, b"junk", false);
        if i % 100_000 == 0 {
            // The real clients keep talking during the flood.
            for peer in &real {
                tracker.handle_datagram(secs(1), local, *peer, b"still here", false);
            }
        }
        while tracker.poll_event().is_some() {}
    }
    assert!(tracker.len() <= 1000);
    let replies: Vec<_> = std::iter::from_fn(|| tracker.poll_transmit()).collect();
    for peer in &real {
        let to_peer = replies
            .iter()
            .filter(|t| t.remote == (*peer).into())
            .count();
        assert_eq!(to_peer, 11, "{peer} was not served throughout");
    }
}
