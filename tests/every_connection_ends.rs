//! Every connection ends: for each state a TLS connection can be in, and each event that can
//! end it (the peer's EOF, a socket error, a timeout, a local close, an abort), the tendril
//! reaches `closed` exactly once and within bounded time, and gives back its buffers.
//!
//! The driver here is the simplest one possible: it writes everything, shuts down when asked,
//! and fires timers when they are due.
#![cfg(feature = "rustls")]

mod kit;

use core::time::Duration;
use kit::{closed, log, Recorder, SharedLog};
use rustls::{ClientConfig, ServerConfig};
use std::sync::Arc;
use tendril_core::tls::TlsLayer;
use tendril_core::{Config, Line, Proto, Tendril};

const IDLE: Duration = Duration::from_secs(10);
const LINGER: Duration = Duration::from_secs(30);

/// The configurations of both ends: the test kit's deterministic TLS, so a failure replays.
struct Certs {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn certs() -> Certs {
    let (server, client) = tendril_core::testkit::tls::pair(0);
    Certs { server, client }
}

fn line() -> Tendril {
    let mut config = Config::default();
    config.idle_timeout = Some(IDLE);
    config.linger = Some(LINGER);
    Tendril::new(Proto::TCP, Line::crlf(), Line::crlf())
        .with_config(config)
        .started_at(Duration::ZERO)
}

fn tls_client(certs: &Certs) -> Tendril {
    let mut t = line();
    let name = tendril_core::testkit::tls::server_name();
    t.wrap(TlsLayer::client(certs.client.clone(), name).unwrap());
    t
}

fn tls_server(certs: &Certs) -> Tendril {
    let mut t = line();
    t.wrap(TlsLayer::server(certs.server.clone()).unwrap());
    t
}

/// Move bytes both ways until neither side has anything to send.
fn exchange(a: &mut Tendril, b: &mut Tendril, app_a: &mut Recorder, app_b: &mut Recorder) {
    for _ in 0..100 {
        a.dispatch(app_a);
        b.dispatch(app_b);
        let to_b = a.outgoing().take_all();
        let to_a = b.outgoing().take_all();
        if to_a.is_empty() && to_b.is_empty() {
            return;
        }
        let now = a.now();
        b.handle_data(now, &to_b);
        a.handle_data(now, &to_a);
    }
    panic!("the exchange never went quiet");
}

/// The states a server connection can be in when the event arrives.
#[derive(Debug, Clone, Copy)]
enum State {
    /// A TLS layer from the first byte, nothing received yet.
    Handshaking,
    /// Half of a ClientHello received.
    HalfAHello,
    /// The handshake is done and frames flow.
    LayerOpen,
    /// A plaintext connection that just wrapped itself in TLS (STARTTLS), nothing received yet.
    StarttlsJustWrapped,
    /// The application closed during the handshake (the close waits for it).
    ClosingInHandshake,
    /// The application closed after the handshake, a `close_notify` sent.
    ClosingGracefully,
    /// The application finished (half-closed) after the handshake.
    Finished,
    /// The peer sent its `close_notify`.
    PeerSentCloseNotify,
    /// After the handshake, replies above the high watermark, the peer reading none of them:
    /// delivery is paused and nothing can be written.
    BackPressured,
    /// After the handshake, in the middle of discarding an oversized line.
    DiscardingOversized,
}

impl State {
    /// `false` where the peer takes none of the server's bytes.
    fn peer_reads(self) -> bool {
        !matches!(self, State::BackPressured)
    }
}

const STATES: [State; 10] = [
    State::Handshaking,
    State::HalfAHello,
    State::LayerOpen,
    State::StarttlsJustWrapped,
    State::ClosingInHandshake,
    State::ClosingGracefully,
    State::Finished,
    State::PeerSentCloseNotify,
    State::BackPressured,
    State::DiscardingOversized,
];

#[derive(Debug, Clone, Copy)]
enum Hit {
    Eof,
    Error,
    Timeout,
    Close,
    Abort,
}

const HITS: [Hit; 5] = [Hit::Eof, Hit::Error, Hit::Timeout, Hit::Close, Hit::Abort];

/// A server tendril brought into `state`, and its log.
fn server_in(state: State, certs: &Certs) -> (Tendril, Recorder, SharedLog) {
    let server_log = log();
    let mut app = Recorder::echo(&server_log);
    let mut client_app = Recorder::new(&log());
    let mut client = tls_client(certs);
    let mut server = match state {
        State::StarttlsJustWrapped => line(),
        _ => tls_server(certs),
    };
    let open = |client: &mut Tendril, server: &mut Tendril, app: &mut Recorder| {
        let mut c = Recorder::new(&log());
        client.send_frame("hello".into()).unwrap();
        exchange(client, server, &mut c, app);
        assert!(!server.is_handshaking() && server.is_open());
    };
    match state {
        State::Handshaking => {}
        State::HalfAHello => {
            let hello = client.outgoing().take_all();
            server.handle_data(Duration::ZERO, &hello[..hello.len() / 2]);
            server.dispatch(&mut app);
        }
        State::LayerOpen => open(&mut client, &mut server, &mut app),
        State::StarttlsJustWrapped => {
            server.handle_data(Duration::ZERO, b"STARTTLS\r\n");
            server.dispatch(&mut app);
            server.outgoing().take_all();
            server.wrap(TlsLayer::server(certs.server.clone()).unwrap());
        }
        State::ClosingInHandshake => {
            server.close();
            server.dispatch(&mut app);
        }
        State::ClosingGracefully => {
            open(&mut client, &mut server, &mut app);
            server.close();
            server.dispatch(&mut app);
        }
        State::Finished => {
            open(&mut client, &mut server, &mut app);
            server.finish();
            server.dispatch(&mut app);
        }
        State::PeerSentCloseNotify => {
            open(&mut client, &mut server, &mut app);
            client.close();
            exchange(&mut client, &mut server, &mut client_app, &mut app);
        }
        State::BackPressured => {
            open(&mut client, &mut server, &mut app);
            let mut config = *server.config();
            config.high_watermark = 4096;
            config.low_watermark = 1024;
            server.set_config(config);
            let reply = bytes::Bytes::from(vec![b'r'; 1000]);
            while server.send_frame(reply.clone()).is_ok() {}
            client.send_frame("a request that waits".into()).unwrap();
            let request = client.outgoing().take_all();
            server.handle_data(Duration::ZERO, &request);
            server.dispatch(&mut app);
            assert!(!server.wants_read() && !server.is_writable());
        }
        State::DiscardingOversized => {
            open(&mut client, &mut server, &mut app);
            server.set_recv_framer(Line::crlf().max_length(64).discard_oversized(true));
            client.set_send_framer(tendril_core::Identity::new());
            client.send_frame(vec![b'x'; 200].into()).unwrap();
            let part = client.outgoing().take_all();
            server.handle_data(Duration::ZERO, &part);
            server.dispatch(&mut app);
            assert!(server.is_open());
        }
    }
    (server, app, server_log)
}

/// Drive `t` as a driver would whose socket takes everything at once (or, unless
/// `peer_reads`, nothing), until it is closed or `limit` of virtual time has passed. Returns
/// the time it closed at.
fn drive(
    t: &mut Tendril,
    app: &mut Recorder,
    limit: Duration,
    peer_reads: bool,
) -> Option<Duration> {
    let mut now = t.now();
    for _ in 0..1_000 {
        t.dispatch(app);
        if peer_reads {
            t.outgoing().take_all();
        }
        if t.wants_shutdown() {
            t.handle_shutdown(now);
            t.dispatch(app);
        }
        if t.is_closed() {
            return Some(now);
        }
        match t.poll_timeout() {
            Some(at) if at <= limit => {
                now = at.max(now);
                t.handle_timeout(now);
            }
            _ => return None,
        }
    }
    None
}

#[test]
fn every_state_reaches_closed_after_every_event() {
    let certs = certs();
    let at = Duration::from_secs(1);
    let mut failures = Vec::new();
    for state in STATES {
        for hit in HITS {
            let (mut server, mut app, server_log) = server_in(state, &certs);
            match hit {
                Hit::Eof => server.handle_eof(at),
                Hit::Error => server.handle_error(at, "connection reset"),
                Hit::Timeout => server.handle_timeout(at + IDLE),
                Hit::Close => {
                    server.handle_timeout(at);
                    server.close();
                }
                Hit::Abort => {
                    server.handle_timeout(at);
                    server.abort();
                }
            }
            // The peer is gone (or silent): nothing more arrives. A close the peer could only
            // answer, or bytes it does not read, are bounded by the linger timeout; everything
            // else ends with no time passing.
            let bound = match hit {
                Hit::Close | Hit::Timeout => at + IDLE + LINGER,
                Hit::Eof if !state.peer_reads() => at + LINGER,
                Hit::Eof | Hit::Error | Hit::Abort => server.now(),
            };
            let ended = drive(&mut server, &mut app, bound, state.peer_reads());
            let reasons = closed(&server_log);
            if ended.is_none() || reasons.len() != 1 || server.heap_bytes() != 0 {
                failures.push(format!(
                    "{state:?} × {hit:?}: closed at {ended:?}, reasons {reasons:?}, {} heap bytes",
                    server.heap_bytes()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_peer_hanging_up_mid_handshake_is_closed_as_closed_by_the_peer() {
    let certs = certs();
    for state in [
        State::Handshaking,
        State::HalfAHello,
        State::StarttlsJustWrapped,
    ] {
        let (mut server, mut app, server_log) = server_in(state, &certs);
        server.handle_eof(Duration::from_secs(1));
        assert_eq!(
            drive(&mut server, &mut app, Duration::from_secs(1), true),
            Some(Duration::from_secs(1)),
            "{state:?}: closed at once"
        );
        assert_eq!(closed(&server_log), ["closed by the peer"], "{state:?}");
    }
}

#[test]
fn a_handshake_that_stalls_ends_at_the_handshake_timeout() {
    let certs = certs();
    let timeout = Config::default()
        .handshake_timeout
        .expect("a default handshake timeout");
    for state in [
        State::Handshaking,
        State::HalfAHello,
        State::StarttlsJustWrapped,
        State::ClosingInHandshake,
    ] {
        let (mut server, mut app, server_log) = server_in(state, &certs);
        // The peer neither sends nor hangs up: only the handshake timeout can end it.
        assert_eq!(
            drive(&mut server, &mut app, LINGER * 10, true),
            Some(timeout),
            "{state:?}: closed at the handshake timeout"
        );
        let expected = match state {
            State::ClosingInHandshake => "closed locally",
            _ => "the handshake was not finished in time",
        };
        assert_eq!(closed(&server_log), [expected], "{state:?}");
    }
}

#[test]
fn a_finished_handshake_leaves_no_handshake_deadline() {
    let certs = certs();
    let (mut server, mut app, server_log) = server_in(State::LayerOpen, &certs);
    let mut config = Config::default();
    config.idle_timeout = None;
    server.set_config(config);
    assert_eq!(server.poll_timeout(), None, "nothing left to time out");
    assert_eq!(drive(&mut server, &mut app, LINGER * 10, true), None);
    assert!(closed(&server_log).is_empty());
}
