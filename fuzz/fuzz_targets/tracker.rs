//! The UDP tracker: datagrams from arbitrary peers at arbitrary times, with small limits.
//! Invariants: the table never exceeds its limit, remembered rejections never exceed theirs,
//! replies only go to the peer that sent what they echo, each peer's `closed` runs at most once,
//! a peer's deadline is never in the past after `handle_timeout`, and a peer's counters survive
//! its trips between parked and live (frames that set a timer, pause delivery or close keep a
//! peer live for a while).
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use core::time::Duration;
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use tendril_core::tracker::{Datagram, Tracker, TrackerConfig};
use tendril_core::{
    AppError, Application, CloseReason, Framer, Identity, LengthPrefixed, Proto, Reject, Tendril,
};

#[derive(Arbitrary, Debug)]
enum Op {
    Datagram {
        peer: u8,
        v6: bool,
        data: Vec<u8>,
        truncated: bool,
    },
    /// Several datagrams at once (`handle_datagrams`).
    Batch(Vec<(u8, bool, Vec<u8>)>),
    Tick(u16),
    Close(u8),
    /// Resume a peer's paused delivery.
    Resume(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_peers: u8,
    max_rejected: u8,
    idle_ms: u16,
    reject_ms: u16,
    length_framing: bool,
    ops: Vec<Op>,
}

struct Echo {
    peer: SocketAddr,
    closes: u32,
    frames: u64,
}

impl Echo {
    /// A reply tagged with the peer it belongs to.
    fn reply(&self, t: &mut Tendril, body: &[u8]) {
        let mut reply = self.peer.to_string().into_bytes();
        reply.push(b'|');
        reply.extend_from_slice(&body[..body.len().min(64)]);
        let _ = t.send_frame(Bytes::from(reply));
    }
}

impl Application for Echo {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        self.frames += 1;
        assert_eq!(t.stats().frames_received, self.frames, "counters lost");
        assert_eq!(
            t.remote_addr().ip(),
            Some(self.peer),
            "another peer's tendril"
        );
        match frame.first() {
            Some(b'T') => {
                let ms = u64::from(frame.get(1).copied().unwrap_or(0));
                t.set_timer(Some(t.now() + Duration::from_millis(ms)));
            }
            Some(b'P') => t.pause_recv(true),
            Some(b'C') => t.close(),
            _ => {}
        }
        self.reply(t, &frame);
        Ok(())
    }

    fn timer(&mut self, t: &mut Tendril) {
        self.reply(t, b"timer");
    }

    fn closed(&mut self, _: &Tendril, _: &CloseReason) {
        self.closes += 1;
        assert_eq!(self.closes, 1, "closed twice");
    }
}

fn peer(n: u8, v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::from((
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)),
            4000,
        ))
    } else {
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, n), 4000))
    }
}

fuzz_target!(|input: Input| {
    let mut config = TrackerConfig::default();
    config.max_peers = usize::from(input.max_peers % 16) + 1;
    config.max_rejected = usize::from(input.max_rejected % 16);
    config.idle_timeout = Duration::from_millis(u64::from(input.idle_ms) + 1);
    config.reject_ttl = Duration::from_millis(u64::from(input.reject_ms));
    let length = input.length_framing;
    let mut tracker = Tracker::new(
        Proto::UDP,
        config,
        move || {
            if length {
                (LengthPrefixed::u8().boxed(), Identity::new().boxed())
            } else {
                (Identity::new().boxed(), Identity::new().boxed())
            }
        },
        |t: &mut Tendril| {
            let peer = t.remote_addr().ip().ok_or_else(|| Reject::new("not IP"))?;
            // Odd last octets/segments are turned away.
            let odd = match peer {
                SocketAddr::V4(a) => a.ip().octets()[3] % 2 == 1,
                SocketAddr::V6(a) => a.ip().segments()[7] % 2 == 1,
            };
            if odd {
                return Err(Reject::new("odd"));
            }
            Ok(Echo {
                peer,
                closes: 0,
                frames: 0,
            })
        },
    );
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
    let mut now = Duration::ZERO;
    for op in input.ops.into_iter().take(512) {
        match op {
            Op::Datagram {
                peer: n,
                v6,
                data,
                truncated,
            } => tracker.handle_datagram(now, local, peer(n, v6), &data, truncated),
            Op::Batch(datagrams) => {
                let batch: Vec<Datagram> = datagrams
                    .iter()
                    .take(64)
                    .map(|(n, v6, data)| Datagram::new(local, peer(*n, *v6), data))
                    .collect();
                tracker.handle_datagrams(now, batch);
            }
            Op::Tick(ms) => {
                now += Duration::from_millis(u64::from(ms));
                tracker.handle_timeout(now);
                if let Some(next) = tracker.poll_timeout() {
                    assert!(next > now, "a deadline left in the past");
                }
            }
            Op::Close(n) => {
                let ids: Vec<_> = tracker.ids().collect();
                if let Some(&id) = ids.get(usize::from(n) % ids.len().max(1)) {
                    tracker.with(now, id, |t, _| t.close());
                }
            }
            Op::Resume(n) => {
                let ids: Vec<_> = tracker.ids().collect();
                if let Some(&id) = ids.get(usize::from(n) % ids.len().max(1)) {
                    let frames = tracker.get(id).map(|p| p.stats().frames_received);
                    tracker.with(now, id, |t, app| {
                        assert_eq!(Some(t.stats().frames_received), frames);
                        assert_eq!(t.stats().frames_received, app.frames);
                        t.pause_recv(false);
                    });
                }
            }
        }
        assert!(tracker.len() <= config.max_peers);
        assert!(tracker.rejected_len() <= config.max_rejected);
        while let Some(reply) = tracker.poll_transmit() {
            let to = reply.remote.ip().expect("an IP peer").to_string();
            let text = String::from_utf8_lossy(&reply.data);
            assert!(text.starts_with(&format!("{to}|")), "{text} sent to {to}");
        }
        while tracker.poll_event().is_some() {}
    }
});
