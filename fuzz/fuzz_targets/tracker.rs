//! The UDP tracker: datagrams from arbitrary peers at arbitrary times, with small limits.
//! Invariants: the table never exceeds its limit, remembered rejections never exceed theirs,
//! replies only go to the peer that sent what they echo, each peer's `closed` runs at most once,
//! and a peer's deadline is never in the past after `handle_timeout`.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use core::time::Duration;
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use tendril_core::tracker::{Tracker, TrackerConfig};
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
    Tick(u16),
    Close(u8),
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
}

impl Application for Echo {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        // Tag replies with the peer they belong to.
        let mut reply = self.peer.to_string().into_bytes();
        reply.push(b'|');
        reply.extend_from_slice(&frame[..frame.len().min(64)]);
        let _ = t.send_frame(Bytes::from(reply));
        Ok(())
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
            Ok(Echo { peer, closes: 0 })
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
