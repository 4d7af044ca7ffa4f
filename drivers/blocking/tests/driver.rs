//! The blocking driver over loopback (127.0.0.1 and ::1 only), with std clients.
//!
//! No sleeps as synchronisation: channels and joins order the steps; timeouts only guard
//! against hangs.

use bytes::Bytes;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tendril_blocking::{get_manager, Manager, WrapperChain};
use tendril_core::{AppError, Application, CloseReason, Config, Line, Reject, Tendril};

/// The longest any step may take before the test fails instead of hanging.
const GUARD: Duration = Duration::from_secs(10);

/// What the server side saw.
#[derive(Default, Debug)]
struct Seen {
    frames: Vec<Bytes>,
    closed: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

struct Echo {
    seen: Shared,
    closed_tx: Option<Sender<String>>,
}

impl Application for Echo {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        self.seen.lock().unwrap().frames.push(frame.clone());
        if frame == "QUIT" {
            t.close();
            return Ok(());
        }
        t.send_frame(frame)?;
        Ok(())
    }

    fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
        self.seen.lock().unwrap().closed.push(reason.to_string());
        if let Some(tx) = &self.closed_tx {
            let _ = tx.send(reason.to_string());
        }
    }
}

/// A line echo server on `endpoint`; returns the manager, what it saw, and close notifications.
fn line_echo(proto: &str, endpoint: &str) -> (Manager, Shared, Receiver<String>) {
    let manager = get_manager(proto, endpoint).unwrap();
    let seen = Shared::default();
    let (tx, rx) = mpsc::channel();
    let s = seen.clone();
    manager
        .start(
            move |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                t.set_send_framer(Line::crlf());
                Ok(Echo {
                    seen: s.clone(),
                    closed_tx: Some(tx.clone()),
                })
            },
            WrapperChain::new(),
        )
        .unwrap();
    (manager, seen, rx)
}

fn port_addr(manager: &Manager) -> SocketAddr {
    manager.local_addr().unwrap().ip().unwrap()
}

/// A TCP client whose reads fail (instead of hanging) after [`GUARD`].
fn client(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(GUARD)).unwrap();
    c.set_write_timeout(Some(GUARD)).unwrap();
    c
}

/// Read `n` bytes, failing (instead of hanging) if they do not come within the guard.
fn read_exactly(stream: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("no reply in time");
    buf
}

/// The next close notification, failing if none comes within the guard.
fn next_close(closed: &Receiver<String>) -> String {
    closed.recv_timeout(GUARD).expect("no close in time")
}

#[cfg(unix)]
#[test]
fn unix_peers_sharing_one_address_pair_are_all_listed_and_stopped() {
    let dir = std::env::temp_dir().join(format!("tendril-blocking-many-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("many.sock");
    let (manager, _seen, closed) = line_echo("unix", path.to_str().unwrap());
    // Unnamed clients: every tendril has the same (path, unnamed) address pair.
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
        c.set_read_timeout(Some(GUARD)).unwrap();
        let line = format!("peer {i}\r\n");
        c.write_all(line.as_bytes()).unwrap();
        assert_eq!(read_exactly(&mut c, line.len()), line.as_bytes());
        clients.push(c);
    }
    assert_eq!(manager.tendrils().len(), 3);
    let started = Instant::now();
    manager.stop();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "every peer closed at once"
    );
    let reasons: Vec<String> = closed.try_iter().collect();
    assert_eq!(reasons, ["closed locally"; 3]);
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn a_panicking_application_takes_down_only_its_connection() {
    let manager = get_manager("tcp", "127.0.0.1:0").unwrap();
    struct Fragile;
    impl Application for Fragile {
        fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            assert_ne!(frame, "PANIC", "the application panics on purpose");
            t.send_frame(frame)?;
            Ok(())
        }
    }
    manager
        .start(
            |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                t.set_send_framer(Line::crlf());
                Ok(Fragile)
            },
            WrapperChain::new(),
        )
        .unwrap();
    let addr = port_addr(&manager);
    let mut steady = client(addr);
    steady.write_all(b"one\r\n").unwrap();
    assert_eq!(read_exactly(&mut steady, 5), b"one\r\n");
    let mut doomed = client(addr);
    doomed.write_all(b"PANIC\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = doomed.read_to_end(&mut rest); // EOF or reset: the connection is gone
    assert!(rest.is_empty());
    steady.write_all(b"two\r\n").unwrap();
    assert_eq!(read_exactly(&mut steady, 5), b"two\r\n");
    let mut fresh = client(addr);
    fresh.write_all(b"three\r\n").unwrap();
    assert_eq!(read_exactly(&mut fresh, 7), b"three\r\n");
    assert_eq!(manager.tendrils().len(), 2);
    manager.stop();
}

#[test]
fn a_udp_application_connects_out_from_its_own_callback() {
    let relay_target = UdpSocket::bind("127.0.0.1:0").unwrap();
    relay_target.set_read_timeout(Some(GUARD)).unwrap();
    let target = relay_target.local_addr().unwrap().to_string();
    let manager = get_manager("udp", "127.0.0.1:0").unwrap();
    /// Relays each datagram to `target` through a tendril it connects from the callback.
    struct Relay(Manager, String);
    impl Application for Relay {
        fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            let out = self.0.connect(
                &self.1,
                |_t: &mut Tendril| -> Result<Relay, Reject> { Err(Reject::new("no replies")) },
                WrapperChain::new(),
            );
            // The relay's own acceptor refuses, so connect reports the refusal ...
            assert!(out.is_err());
            // ... and one that accepts gets a tendril.
            let m = self.0.clone();
            let handle = self.0.connect(
                &self.1,
                move |_t: &mut Tendril| Ok(Relay(m.clone(), String::new())),
                WrapperChain::new(),
            )?;
            handle.send_frame(frame)?;
            Ok(())
        }
    }
    let m = manager.clone();
    manager
        .start(
            move |_t: &mut Tendril| Ok(Relay(m.clone(), target.clone())),
            WrapperChain::new(),
        )
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"relay me", port_addr(&manager)).unwrap();
    let mut buf = [0; 64];
    let n = relay_target.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"relay me");
    manager.stop();
}

#[test]
fn stop_of_an_idle_listener_is_prompt_and_frees_its_port() {
    for proto in ["tcp", "udp"] {
        let (manager, _seen, _closed) = line_echo(proto, "127.0.0.1:0");
        let addr = manager.local_addr().and_then(|a| a.ip()).unwrap();
        let started = Instant::now();
        manager.stop();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "{proto}: stop took {took:?}"
        );
        assert!(!manager.running());
        // A stopped manager stays stopped (the suite's start_or_connect_after_stop_is_refused);
        // a new one binds the port the stopped one let go of.
        let again = get_manager(proto, &addr.to_string()).unwrap();
        again
            .start(
                |_t: &mut Tendril| -> Result<Echo, Reject> { Err(Reject::new("again")) },
                WrapperChain::new(),
            )
            .unwrap();
        assert!(again.running());
        again.stop();
    }
}

#[test]
fn stop_waits_for_a_slow_peer_then_aborts() {
    let manager = get_manager("tcp", "127.0.0.1:0").unwrap();
    manager.set_stop_timeout(Duration::from_millis(200));
    let (tx, closed) = mpsc::channel();
    /// Answers each line with 4 MiB, so a peer that does not read keeps the close waiting.
    struct Flood(Sender<String>);
    impl Application for Flood {
        fn recv_frame(&mut self, t: &mut Tendril, _: Bytes) -> Result<(), AppError> {
            t.send_frame(Bytes::from(vec![b'x'; 4 << 20]))?;
            Ok(())
        }
        fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
            let _ = self.0.send(reason.to_string());
        }
    }
    manager
        .start(
            move |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                Ok(Flood(tx.clone()))
            },
            WrapperChain::new().chain(tendril_net::options::send_buffer_size(4096)),
        )
        .unwrap();
    let mut c = small_window_client(port_addr(&manager));
    c.write_all(b"go\r\n").unwrap();
    // The first bytes arrive: the reply is being written, and most of it cannot be.
    read_exactly(&mut c, 1);
    let started = Instant::now();
    manager.stop();
    let took = started.elapsed();
    assert_eq!(next_close(&closed), "aborted");
    assert!(took >= Duration::from_millis(200), "stop took {took:?}");
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
}

#[test]
fn stop_from_inside_a_callback_does_not_deadlock() {
    let manager = get_manager("tcp", "127.0.0.1:0").unwrap();
    let (tx, closed) = mpsc::channel();
    struct Stopper(Manager, Sender<String>);
    impl Application for Stopper {
        fn recv_frame(&mut self, _: &mut Tendril, _: Bytes) -> Result<(), AppError> {
            self.0.stop();
            Ok(())
        }
        fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
            let _ = self.1.send(reason.to_string());
        }
    }
    let m = manager.clone();
    manager
        .start(
            move |_t: &mut Tendril| Ok(Stopper(m.clone(), tx.clone())),
            WrapperChain::new(),
        )
        .unwrap();
    let mut c = client(port_addr(&manager));
    c.write_all(b"stop").unwrap();
    assert_eq!(next_close(&closed), "closed locally");
    // A second stop waits for the first to finish.
    manager.stop();
    assert!(!manager.running());
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn an_idle_timeout_is_driven_by_the_driver_clock() {
    let manager = get_manager("tcp", "127.0.0.1:0").unwrap();
    let mut config = Config::default();
    config.idle_timeout = Some(Duration::from_millis(100));
    manager.set_config(config);
    let (tx, closed) = mpsc::channel();
    manager
        .start(
            move |_t: &mut Tendril| {
                Ok(Echo {
                    seen: Shared::default(),
                    closed_tx: Some(tx.clone()),
                })
            },
            WrapperChain::new(),
        )
        .unwrap();
    let mut c = client(port_addr(&manager));
    assert_eq!(next_close(&closed), "idle timeout");
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).unwrap(), 0, "the client sees EOF");
    manager.stop();
}

#[test]
fn an_idle_udp_peer_is_closed_by_the_tracker_timer() {
    let manager = get_manager("udp", "127.0.0.1:0").unwrap();
    let mut config = Config::default();
    config.idle_timeout = Some(Duration::from_millis(100));
    manager.set_config(config);
    let (tx, closed) = mpsc::channel();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = accepted.clone();
    manager
        .start(
            move |_t: &mut Tendril| {
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(Echo {
                    seen: Shared::default(),
                    closed_tx: Some(tx.clone()),
                })
            },
            WrapperChain::new(),
        )
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(GUARD)).unwrap();
    client.connect(port_addr(&manager)).unwrap();
    let mut buf = [0; 16];
    client.send(b"hello").unwrap();
    assert_eq!(client.recv(&mut buf).unwrap(), 5);
    assert_eq!(next_close(&closed), "idle timeout");
    // The peer left the table: its next datagram is a new peer for the acceptor.
    client.send(b"again").unwrap();
    assert_eq!(client.recv(&mut buf).unwrap(), 5);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    manager.stop();
    let last = next_close(&closed);
    assert!(last == "closed locally" || last == "idle timeout", "{last}");
}

/// A TCP client with a small receive buffer, so a peer's replies back up quickly.
fn small_window_client(addr: SocketAddr) -> TcpStream {
    use tendril_net::socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let c: TcpStream = socket.into();
    c.set_read_timeout(Some(GUARD)).unwrap();
    c.set_write_timeout(Some(GUARD)).unwrap();
    c
}

#[test]
fn a_handle_send_waits_for_room_in_the_queue() {
    const FRAMES: usize = 200;
    const SIZE: usize = 16 * 1024;
    const HIGH: usize = 64 * 1024;
    let manager = get_manager("tcp", "127.0.0.1:0").unwrap();
    let mut config = Config::default();
    config.high_watermark = HIGH;
    config.low_watermark = 16 * 1024;
    manager.set_config(config);
    let (opened_tx, opened) = mpsc::channel();
    let opened_tx = Mutex::new(opened_tx);
    /// Says "ready" on its first frame, then ignores input.
    struct Quiet(Option<Sender<()>>);
    impl Application for Quiet {
        fn recv_frame(&mut self, _: &mut Tendril, _: Bytes) -> Result<(), AppError> {
            if let Some(ready) = self.0.take() {
                let _ = ready.send(());
            }
            Ok(())
        }
    }
    manager
        .start(
            move |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                Ok(Quiet(Some(opened_tx.lock().unwrap().clone())))
            },
            WrapperChain::new().chain(tendril_net::options::send_buffer_size(4096)),
        )
        .unwrap();
    let mut c = small_window_client(port_addr(&manager));
    c.write_all(b"ready?\r\n").unwrap();
    opened.recv_timeout(GUARD).unwrap();
    let handle = manager.tendrils().pop().unwrap();
    let most = Arc::new(Mutex::new(0usize));
    let (progress_tx, progress) = mpsc::channel();
    let (h, m) = (handle.clone(), most.clone());
    let sender = std::thread::spawn(move || {
        for i in 0..FRAMES {
            h.send_frame(Bytes::from(vec![b'a' + (i % 26) as u8; SIZE]))
                .unwrap();
            let m = m.clone();
            h.with(move |t| {
                let mut most = m.lock().unwrap();
                *most = (*most).max(t.outgoing_len());
            });
            let _ = progress_tx.send(i);
        }
    });
    // Some frames are queued while the client reads nothing ...
    while progress.recv_timeout(GUARD).expect("no frame was queued") < 3 {}
    // ... and then everything arrives, in order.
    for i in 0..FRAMES {
        let frame = read_exactly(&mut c, SIZE);
        let letter = b'a' + (i % 26) as u8;
        assert!(frame.iter().all(|&b| b == letter), "frame {i}");
    }
    sender.join().unwrap();
    let most = *most.lock().unwrap();
    assert!(most <= HIGH + SIZE, "queue grew to {most}");
    manager.stop();
}

#[test]
fn half_close_through_a_handle_still_receives_the_replies() {
    /// Collects frames; reports its close.
    struct Collect(Sender<Bytes>, Sender<String>);
    impl Application for Collect {
        fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            let _ = self.0.send(frame);
            Ok(())
        }
        fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
            let _ = self.1.send(reason.to_string());
        }
    }
    let (server, _seen, server_closed) = line_echo("tcp", "127.0.0.1:0");
    let client = get_manager("tcp", "").unwrap();
    let (tx, replies) = mpsc::channel();
    let (closed_tx, client_closed) = mpsc::channel();
    let handle = client
        .connect(
            &port_addr(&server).to_string(),
            move |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                t.set_send_framer(Line::crlf());
                Ok(Collect(tx.clone(), closed_tx.clone()))
            },
            WrapperChain::new(),
        )
        .unwrap();
    handle.send_frame(Bytes::from("last words")).unwrap();
    assert!(handle.finish());
    // The server sees EOF after the frame, answers it, and closes; the client reads it all.
    assert_eq!(replies.recv_timeout(GUARD).unwrap(), "last words");
    assert_eq!(next_close(&server_closed), "closed by the peer");
    assert_eq!(next_close(&client_closed), "closed by the peer");
    client.stop();
    server.stop();
}

#[test]
fn an_acceptor_keeps_the_current_handle_to_broadcast_to_every_member() {
    use tendril_blocking::{current_handle, TendrilHandle};
    type Members = Arc<Mutex<Vec<TendrilHandle>>>;
    /// Sends every line it receives to every member, itself included.
    struct Chat(Members);
    impl Application for Chat {
        fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            // Not under the lock: a member's thread may want it while we wait for it.
            let members = self.0.lock().unwrap().clone();
            for member in members {
                member.send_frame(frame.clone())?;
            }
            Ok(())
        }
    }
    let members = Members::default();
    let (joined_tx, joined) = mpsc::channel();
    let list = members.clone();
    let manager = get_manager("tcp", "127.0.0.1:0").unwrap();
    manager
        .start(
            move |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                t.set_send_framer(Line::crlf());
                let me = current_handle().expect("the acceptor's own handle");
                assert!(me.send_frame(Bytes::from("welcome")).is_ok());
                list.lock().unwrap().push(me);
                let _ = joined_tx.send(());
                Ok(Chat(list.clone()))
            },
            WrapperChain::new(),
        )
        .unwrap();
    assert!(current_handle().is_none());
    let mut a = client(port_addr(&manager));
    let mut b = client(port_addr(&manager));
    for _ in 0..2 {
        joined.recv_timeout(GUARD).unwrap();
    }
    assert_eq!(read_exactly(&mut a, 9), b"welcome\r\n");
    assert_eq!(read_exactly(&mut b, 9), b"welcome\r\n");
    a.write_all(b"hi all\r\n").unwrap();
    assert_eq!(read_exactly(&mut a, 8), b"hi all\r\n");
    assert_eq!(read_exactly(&mut b, 8), b"hi all\r\n");
    manager.stop();
    assert!(members.lock().unwrap().iter().all(|h| h.is_closed()));
}

mod tls {
    use super::*;
    use rustls::pki_types::{PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, RootCertStore, ServerConfig};
    use tendril_core::tls::TlsLayer;

    /// A self-signed "localhost" certificate: a server configuration and a client one that
    /// trusts it.
    fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    #[test]
    fn frames_echo_through_tls_between_two_managers() {
        let (server_config, client_config) = configs();
        let server = get_manager("tcp", "127.0.0.1:0").unwrap();
        let seen = Shared::default();
        let (server_tx, server_closed) = mpsc::channel();
        let s = seen.clone();
        server
            .start(
                move |t: &mut Tendril| {
                    t.wrap(TlsLayer::server(server_config.clone()).unwrap());
                    t.set_recv_framer(Line::crlf());
                    t.set_send_framer(Line::crlf());
                    Ok(Echo {
                        seen: s.clone(),
                        closed_tx: Some(server_tx.clone()),
                    })
                },
                WrapperChain::new(),
            )
            .unwrap();

        let client = get_manager("tcp", "").unwrap();
        let (tx, replies) = mpsc::channel();
        let (client_tx, client_closed) = mpsc::channel();
        struct Client(Sender<Bytes>, Sender<String>);
        impl Application for Client {
            fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
                let _ = self.0.send(frame);
                Ok(())
            }
            fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
                let _ = self.1.send(reason.to_string());
            }
        }
        let handle = client
            .connect(
                &format!("localhost:{}", port_addr(&server).port()),
                move |t: &mut Tendril| {
                    let name = ServerName::try_from("localhost").unwrap();
                    t.wrap(TlsLayer::client(client_config.clone(), name).unwrap());
                    t.set_recv_framer(Line::crlf());
                    t.set_send_framer(Line::crlf());
                    Ok(Client(tx.clone(), client_tx.clone()))
                },
                WrapperChain::new(),
            )
            .unwrap();
        // Sent while the handshake runs: the layer holds it until the session is up.
        handle.send_frame(Bytes::from("secret one")).unwrap();
        handle.send_frame(Bytes::from("secret two")).unwrap();
        assert_eq!(replies.recv_timeout(GUARD).unwrap(), "secret one");
        assert_eq!(replies.recv_timeout(GUARD).unwrap(), "secret two");
        assert_eq!(seen.lock().unwrap().frames, ["secret one", "secret two"]);
        handle.close();
        assert_eq!(client_closed.recv_timeout(GUARD).unwrap(), "closed locally");
        assert_eq!(
            server_closed.recv_timeout(GUARD).unwrap(),
            "closed by the peer"
        );
        client.stop();
        server.stop();
    }
}
