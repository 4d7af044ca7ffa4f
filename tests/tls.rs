//! TLS in memory: both layers over the test pipe, STARTTLS from inside `recv_frame`, plaintext
//! injection after STARTTLS, and a certificate the client does not trust.
#![cfg(feature = "rustls")]

mod kit;

use bytes::Bytes;
use kit::{closed, log, texts, Recorder, SharedLog};
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::Arc;
use tendril_core::testkit::Pipe;
use tendril_core::tls::TlsLayer;
use tendril_core::{AppError, Application, Event, Line, Proto, Tendril};

struct Certs {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed "localhost" certificate, and a client that trusts it (or trusts nothing).
fn certs(trusted: bool) -> Certs {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let mut roots = RootCertStore::empty();
    if trusted {
        roots.add(cert.der().clone()).unwrap();
    }
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Certs {
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

fn line() -> Tendril {
    Tendril::new(Proto::TCP, Line::crlf(), Line::crlf())
}

fn client_layer(certs: &Certs) -> TlsLayer {
    TlsLayer::client(
        certs.client.clone(),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap()
}

/// A client and a server, each in its TLS layer from `certs`.
fn tls_pair(certs: &Certs) -> (Tendril, Tendril) {
    let mut client = line();
    client.wrap(client_layer(certs));
    let mut server = line();
    server.wrap(TlsLayer::server(certs.server.clone()).unwrap());
    (client, server)
}

#[test]
fn tls_from_the_first_byte_carries_frames_both_ways() {
    let certs = certs(true);
    let (client_log, server_log) = (log(), log());
    let (mut client, server) = tls_pair(&certs);
    client.send_frame("hello over tls".into()).unwrap();
    let mut pipe = Pipe::new(
        (client, Recorder::new(&client_log)),
        (server, Recorder::echo(&server_log)),
    );
    pipe.run_chunked(|| 100);
    assert_eq!(texts(&server_log), ["hello over tls"]);
    assert_eq!(texts(&client_log), ["hello over tls"]);
    assert!(!pipe.client.0.is_handshaking());

    pipe.client.0.close();
    pipe.run();
    assert_eq!(closed(&client_log), ["closed locally"]);
    assert_eq!(closed(&server_log), ["closed by the peer"]);
}

/// A server that upgrades on STARTTLS, as SMTP does.
struct StartTlsServer {
    config: Arc<ServerConfig>,
    log: SharedLog,
}

impl Application for StartTlsServer {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        self.log.lock().unwrap().frames.push(frame.clone());
        if frame == "STARTTLS" {
            t.send_frame("220 ready to start TLS".into())?;
            t.wrap(TlsLayer::server(self.config.clone())?);
        } else {
            t.send_frame(Bytes::from(format!(
                "250 got {}",
                String::from_utf8_lossy(&frame)
            )))?;
        }
        Ok(())
    }

    fn event(&mut self, _: &mut Tendril, event: &Event) {
        self.log.lock().unwrap().events.push(format!("{event:?}"));
    }

    fn closed(&mut self, _: &Tendril, reason: &tendril_core::CloseReason) {
        self.log.lock().unwrap().closed.push(reason.to_string());
    }
}

/// A client that upgrades when the server says 220, then sends a secret.
struct StartTlsClient {
    certs: Certs,
    log: SharedLog,
}

impl Application for StartTlsClient {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        self.log.lock().unwrap().frames.push(frame.clone());
        if frame.starts_with(b"220") {
            t.wrap(client_layer(&self.certs));
            t.send_frame("secret".into())?;
        }
        Ok(())
    }

    fn closed(&mut self, _: &Tendril, reason: &tendril_core::CloseReason) {
        self.log.lock().unwrap().closed.push(reason.to_string());
    }
}

#[test]
fn starttls_from_inside_recv_frame_upgrades_the_stream() {
    let certs = certs(true);
    let server_config = certs.server.clone();
    let (client_log, server_log) = (log(), log());
    let mut client = line();
    client.send_frame("EHLO me".into()).unwrap();
    client.send_frame("STARTTLS".into()).unwrap();
    let mut pipe = Pipe::new(
        (
            client,
            StartTlsClient {
                certs,
                log: client_log.clone(),
            },
        ),
        (
            line(),
            StartTlsServer {
                config: server_config,
                log: server_log.clone(),
            },
        ),
    );
    pipe.run_chunked(|| 37);
    assert_eq!(texts(&server_log), ["EHLO me", "STARTTLS", "secret"]);
    assert_eq!(
        texts(&client_log),
        [
            "250 got EHLO me",
            "220 ready to start TLS",
            "250 got secret"
        ]
    );
    assert!(server_log.lock().unwrap().events.is_empty());
}

#[test]
fn plaintext_pipelined_after_starttls_is_discarded_and_reported() {
    let certs = certs(true);
    let server_config = certs.server.clone();
    let (client_log, server_log) = (log(), log());
    let mut client = line();
    // The attacker's classic: a command injected behind STARTTLS in the same packet.
    client.send_frame("STARTTLS".into()).unwrap();
    client
        .send_frame("RCPT TO:<victim@example.com>".into())
        .unwrap();
    let mut pipe = Pipe::new(
        (
            client,
            StartTlsClient {
                certs,
                log: client_log.clone(),
            },
        ),
        (
            line(),
            StartTlsServer {
                config: server_config,
                log: server_log.clone(),
            },
        ),
    );
    pipe.run();
    assert_eq!(texts(&server_log), ["STARTTLS", "secret"]);
    assert_eq!(
        server_log.lock().unwrap().events,
        ["PlaintextDiscarded(30)"]
    );
}

#[test]
fn an_untrusted_certificate_fails_the_handshake_and_closes_both_sides_once() {
    let certs = certs(false);
    let (client_log, server_log) = (log(), log());
    let (mut client, server) = tls_pair(&certs);
    client.send_frame("never sent".into()).unwrap();
    let mut pipe = Pipe::new(
        (client, Recorder::new(&client_log)),
        (server, Recorder::new(&server_log)),
    );
    pipe.run();
    let client_closed = closed(&client_log);
    let server_closed = closed(&server_log);
    assert_eq!(client_closed.len(), 1, "{client_closed:?}");
    assert_eq!(server_closed.len(), 1, "{server_closed:?}");
    assert!(
        client_closed[0].starts_with("TLS error: invalid peer certificate"),
        "{client_closed:?}"
    );
    assert!(
        server_closed[0].starts_with("TLS error"),
        "{server_closed:?}"
    );
    assert!(texts(&server_log).is_empty());
}

#[test]
fn garbage_instead_of_a_client_hello_closes_with_a_tls_error() {
    let certs = certs(true);
    let server_log = log();
    let mut server = line();
    server.wrap(TlsLayer::server(certs.server.clone()).unwrap());
    let mut app = Recorder::new(&server_log);
    server.handle_data(core::time::Duration::ZERO, b"GET / HTTP/1.1\r\n\r\n");
    server.dispatch(&mut app);
    // The alert goes out before the close.
    let alert = server.outgoing().take_all();
    assert_eq!(alert[0], 0x15, "a TLS alert record");
    if server.wants_shutdown() {
        server.handle_shutdown(core::time::Duration::ZERO);
        server.dispatch(&mut app);
    }
    let reasons = closed(&server_log);
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].starts_with("TLS error"), "{reasons:?}");
}

#[test]
fn finishing_during_the_handshake_still_delivers_what_was_queued() {
    let certs = certs(true);
    let (client_log, server_log) = (log(), log());
    let (mut client, server) = tls_pair(&certs);
    client
        .send_frame("sent before the handshake".into())
        .unwrap();
    client.finish();
    let mut pipe = Pipe::new(
        (client, Recorder::new(&client_log)),
        (server, Recorder::echo(&server_log)),
    );
    pipe.run_chunked(|| 64);
    assert_eq!(texts(&server_log), ["sent before the handshake"]);
    assert_eq!(texts(&client_log), ["sent before the handshake"]);
    assert_eq!(closed(&client_log), ["closed by the peer"]);
    assert_eq!(closed(&server_log), ["closed by the peer"]);
}

/// Found by the simulated network (`tests/sim.rs`, seed 9 of the hostile preset): a close
/// waits for the handshake to send what was queued, so it must go on reading the handshake.
#[test]
fn closing_during_the_handshake_still_delivers_what_was_queued() {
    let certs = certs(true);
    let (client_log, server_log) = (log(), log());
    let (mut client, server) = tls_pair(&certs);
    client
        .send_frame("sent before the handshake".into())
        .unwrap();
    let mut pipe = Pipe::new(
        (client, Recorder::new(&client_log)),
        (server, Recorder::new(&server_log)),
    );
    // The client hello goes out; the client closes while it waits for the server's reply.
    pipe.step(&mut || 64);
    assert!(pipe.client.0.is_handshaking());
    pipe.client.0.close();
    pipe.run_chunked(|| 64);
    assert_eq!(texts(&server_log), ["sent before the handshake"]);
    assert_eq!(closed(&client_log), ["closed locally"]);
    assert_eq!(closed(&server_log), ["closed by the peer"]);
}

#[test]
fn a_handshake_that_stops_halfway_ends_at_the_idle_timeout() {
    use core::time::Duration;
    let certs = certs(true);
    // The client's first flight, cut in half.
    let mut client = line();
    client.wrap(client_layer(&certs));
    let hello = client.outgoing().take_all();
    let l = log();
    let mut app = Recorder::new(&l);
    let mut config = tendril_core::Config::default();
    config.idle_timeout = Some(Duration::from_secs(10));
    // Without a handshake timeout the idle timeout still ends it (the handshake timeout's own
    // tests are in every_connection_ends.rs).
    config.handshake_timeout = None;
    let mut server = line().with_config(config).started_at(Duration::ZERO);
    server.wrap(TlsLayer::server(certs.server.clone()).unwrap());
    server.handle_data(Duration::from_secs(1), &hello[..hello.len() / 2]);
    server.dispatch(&mut app);
    assert!(server.is_handshaking());
    assert_eq!(server.poll_timeout(), Some(Duration::from_secs(11)));
    server.handle_timeout(Duration::from_secs(11));
    server.dispatch(&mut app);
    assert!(
        server.wants_shutdown(),
        "nothing to flush: shut down at once"
    );
    server.handle_shutdown(Duration::from_secs(11));
    server.dispatch(&mut app);
    assert_eq!(closed(&l), ["idle timeout"]);
    assert_eq!(server.heap_bytes(), 0, "buffers released");
}
