//! The Tokio driver over loopback (127.0.0.1 and ::1 only).

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tendril_core::{
    AppError, Application, Chunk, CloseReason, Config, LengthPrefixed, Line, Reject, Tendril,
};
use tendril_tokio::{get_manager, Manager, WrapperChain};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// What the server side saw.
#[derive(Default, Debug)]
struct Seen {
    frames: Vec<Bytes>,
    closed: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

struct Echo {
    seen: Shared,
    closed_tx: Option<mpsc::UnboundedSender<String>>,
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
async fn line_echo(
    proto: &str,
    endpoint: &str,
) -> (Manager, Shared, mpsc::UnboundedReceiver<String>) {
    let manager = get_manager(proto, endpoint).unwrap();
    let seen = Shared::default();
    let (tx, rx) = mpsc::unbounded_channel();
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
        .await
        .unwrap();
    (manager, seen, rx)
}

fn port_addr(manager: &Manager) -> std::net::SocketAddr {
    manager.local_addr().unwrap().ip().unwrap()
}

/// Read `n` bytes, failing (instead of hanging) if they do not come within 10 s.
async fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut buf))
        .await
        .expect("no reply within 10 s")
        .unwrap();
    buf
}

#[tokio::test]
async fn tcp_echo_over_ipv4_and_ipv6_loopback() {
    for endpoint in ["127.0.0.1:0", "[::1]:0"] {
        let (manager, seen, mut closed) = line_echo("tcp", endpoint).await;
        let mut client = TcpStream::connect(port_addr(&manager)).await.unwrap();
        client.write_all(b"hello\r\nworld\r\n").await.unwrap();
        assert_eq!(read_exactly(&mut client, 14).await, b"hello\r\nworld\r\n");
        drop(client);
        assert_eq!(closed.recv().await.unwrap(), "closed by the peer");
        assert_eq!(seen.lock().unwrap().frames, ["hello", "world"]);
        manager.stop().await;
    }
}

#[tokio::test]
async fn udp_echo_over_ipv4_and_ipv6_loopback() {
    for (endpoint, client_addr) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
        let manager = get_manager("udp", endpoint).unwrap();
        let seen = Shared::default();
        let s = seen.clone();
        manager
            .start(
                move |_t: &mut Tendril| {
                    Ok(Echo {
                        seen: s.clone(),
                        closed_tx: None,
                    })
                },
                WrapperChain::new(),
            )
            .await
            .unwrap();
        let client = UdpSocket::bind(client_addr).await.unwrap();
        client.connect(port_addr(&manager)).await.unwrap();
        for msg in [&b"one"[..], b"two", &[0u8; 60_000]] {
            client.send(msg).await.unwrap();
            let mut buf = vec![0; 65_536];
            let n = client.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], msg, "a whole datagram comes back");
        }
        let local = manager.local_addr().unwrap();
        let remote = client.local_addr().unwrap().into();
        assert!(
            manager.find(&local, &remote).is_some(),
            "the peer is tracked"
        );
        manager.stop().await;
        assert!(manager.tendrils().is_empty());
    }
}

#[cfg(unix)]
#[tokio::test]
async fn unix_socket_echo_through_the_registered_extension() {
    let dir = std::env::temp_dir().join(format!("tendril-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let (manager, seen, mut closed) = line_echo("unix", path.to_str().unwrap()).await;
    let mut client = tokio::net::UnixStream::connect(&path).await.unwrap();
    client.write_all(b"over unix\r\n").await.unwrap();
    let mut buf = [0; 11];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"over unix\r\n");
    drop(client);
    assert_eq!(closed.recv().await.unwrap(), "closed by the peer");
    assert_eq!(seen.lock().unwrap().frames, ["over unix"]);
    manager.stop().await;
    assert!(!path.exists(), "the socket file is removed on stop");
}

/// DATA switches to five raw bytes, then back to lines.
struct Switcher {
    seen: Shared,
    after_data: bool,
}

impl Application for Switcher {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        self.seen.lock().unwrap().frames.push(frame.clone());
        if frame == "DATA" {
            t.set_recv_framer(Chunk::new(5));
            self.after_data = true;
        } else if self.after_data {
            t.set_recv_framer(Line::crlf());
            self.after_data = false;
        }
        t.send_frame(frame)?;
        Ok(())
    }
}

#[tokio::test]
async fn framer_switching_over_a_real_socket_with_pipelined_input() {
    let manager = get_manager("tcp", "127.0.0.1:0").unwrap();
    let seen = Shared::default();
    let s = seen.clone();
    manager
        .start(
            move |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                t.set_send_framer(LengthPrefixed::u8());
                Ok(Switcher {
                    seen: s.clone(),
                    after_data: false,
                })
            },
            WrapperChain::new(),
        )
        .await
        .unwrap();
    let mut client = TcpStream::connect(port_addr(&manager)).await.unwrap();
    client
        .write_all(b"DATA\r\n12345rest\r\nnext\r\n")
        .await
        .unwrap();
    let reply = read_exactly(&mut client, 5 + 6 + 5 + 5).await;
    assert_eq!(reply, b"\x04DATA\x0512345\x04rest\x04next");
    assert_eq!(
        seen.lock().unwrap().frames,
        ["DATA", "12345", "rest", "next"]
    );
    manager.stop().await;
}

#[tokio::test]
async fn closed_is_reported_once_on_peer_eof_reset_and_local_close() {
    let (manager, _seen, mut closed) = line_echo("tcp", "127.0.0.1:0").await;
    let addr = port_addr(&manager);

    let client = TcpStream::connect(addr).await.unwrap();
    drop(client);
    assert_eq!(closed.recv().await.unwrap(), "closed by the peer");

    let client = TcpStream::connect(addr).await.unwrap();
    tendril_net::socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client); // RST
    let reason = closed.recv().await.unwrap();
    assert!(
        reason.starts_with("I/O error") || reason == "closed by the peer",
        "{reason}"
    );

    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(b"QUIT\r\n").await.unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "the server closed without a reply");
    assert_eq!(closed.recv().await.unwrap(), "closed locally");

    manager.stop().await;
    assert!(closed.try_recv().is_err(), "no second close for anyone");
}

#[tokio::test]
async fn a_peer_that_disconnects_mid_frame_gets_a_truncated_close() {
    let manager = get_manager("tcp", "127.0.0.1:0").unwrap();
    let (tx, mut closed) = mpsc::unbounded_channel();
    manager
        .start(
            move |t: &mut Tendril| {
                t.set_recv_framer(LengthPrefixed::u16_be());
                Ok(Echo {
                    seen: Shared::default(),
                    closed_tx: Some(tx.clone()),
                })
            },
            WrapperChain::new(),
        )
        .await
        .unwrap();
    let mut client = TcpStream::connect(port_addr(&manager)).await.unwrap();
    client.write_all(&[0, 100, b'a', b'b']).await.unwrap();
    drop(client);
    let reason = closed.recv().await.unwrap();
    assert!(
        reason.starts_with("framing error: input ended inside a length-prefixed frame"),
        "{reason}"
    );
    manager.stop().await;
}

#[tokio::test]
async fn stop_closes_the_listener_and_every_tendril_once() {
    let (manager, _seen, mut closed) = line_echo("tcp", "127.0.0.1:0").await;
    let addr = port_addr(&manager);
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"hi\r\n").await.unwrap();
        read_exactly(&mut c, 4).await;
        clients.push(c);
    }
    assert!(manager.running());
    assert_eq!(manager.tendrils().len(), 5);
    manager.stop().await;
    assert!(!manager.running());
    let mut reasons = Vec::new();
    while let Ok(r) = closed.try_recv() {
        reasons.push(r);
    }
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(reasons.iter().all(|r| r == "closed locally"), "{reasons:?}");
    for mut c in clients {
        let mut buf = Vec::new();
        assert_eq!(
            c.read_to_end(&mut buf).await.unwrap(),
            0,
            "each client sees EOF"
        );
    }
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn a_thousand_concurrent_connections() {
    let (manager, seen, _closed) = line_echo("tcp", "127.0.0.1:0").await;
    let addr = port_addr(&manager);
    let mut tasks = Vec::new();
    for i in 0..1000 {
        tasks.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let line = format!("client {i}\r\n");
            c.write_all(line.as_bytes()).await.unwrap();
            let mut buf = vec![0; line.len()];
            c.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, line.as_bytes());
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    assert_eq!(manager.tendrils().len(), 1000);
    assert_eq!(seen.lock().unwrap().frames.len(), 1000);
    drop(clients);
    manager.stop().await;
}

#[tokio::test]
async fn back_pressure_against_a_slow_reader_bounds_the_queue() {
    let manager = get_manager("tcp", "127.0.0.1:0").unwrap();
    let mut config = Config::default();
    config.high_watermark = 64 * 1024;
    config.low_watermark = 16 * 1024;
    manager.set_config(config);
    let max_queued = Arc::new(Mutex::new(0usize));
    let mq = max_queued.clone();
    /// Answers every line with 1 KiB, and records the largest outgoing queue.
    struct Big(Arc<Mutex<usize>>);
    impl Application for Big {
        fn recv_frame(&mut self, t: &mut Tendril, _: Bytes) -> Result<(), AppError> {
            t.send_frame(Bytes::from(vec![b'x'; 1024]))?;
            let mut m = self.0.lock().unwrap();
            *m = (*m).max(t.transmit_len());
            Ok(())
        }
    }
    manager
        .start(
            move |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                t.set_send_framer(Line::crlf());
                Ok(Big(mq.clone()))
            },
            tendril_net::WrapperChain::new().chain(tendril_net::options::send_buffer_size(4096)),
        )
        .await
        .unwrap();
    let client = tendril_net::socket2::Socket::new(
        tendril_net::socket2::Domain::IPV4,
        tendril_net::socket2::Type::STREAM,
        None,
    )
    .unwrap();
    client.set_recv_buffer_size(4096).unwrap();
    client.connect(&port_addr(&manager).into()).unwrap();
    client.set_nonblocking(true).unwrap();
    let mut client = TcpStream::from_std(client.into()).unwrap();
    // 20k requests (20 MiB of replies) while reading nothing.
    let requests = b"r\r\n".repeat(20_000);
    let (mut rd, mut wr) = client.split();
    let write = async {
        let _ = tokio::time::timeout(Duration::from_secs(2), wr.write_all(&requests)).await;
    };
    write.await;
    // The server stopped reading: its queue stayed near the watermark.
    let most = *max_queued.lock().unwrap();
    assert!(most < 64 * 1024 + 2048, "queue grew to {most}");
    // Now read everything: all replies arrive.
    let mut total = 0;
    let mut buf = vec![0; 65536];
    while total < 20_000 * 1026 {
        let n = tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        total += n;
        if total >= 1026 * 1000 {
            // Let the rest of the requests through.
            let _ = tokio::time::timeout(Duration::from_millis(1), wr.write_all(&[])).await;
        }
    }
    assert!(total >= 1026 * 1000, "replies arrived: {total}");
    manager.stop().await;
}

#[tokio::test]
async fn two_ephemeral_managers_and_a_listener_that_also_connects_out() {
    let (a, seen_a, _ca) = line_echo("tcp", "127.0.0.1:0").await;
    let (b, _seen_b, _cb) = line_echo("tcp", "127.0.0.1:0").await;
    assert_ne!(port_addr(&a), port_addr(&b));
    let (tx, mut replies) = mpsc::unbounded_channel();
    struct Client(mpsc::UnboundedSender<Bytes>);
    impl Application for Client {
        fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            let _ = self.0.send(frame);
            Ok(())
        }
    }
    // b, a listening manager, connects out to a.
    let handle = b
        .connect(
            &format!("localhost:{}", port_addr(&a).port()),
            move |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                t.set_send_framer(Line::crlf());
                Ok(Client(tx.clone()))
            },
            WrapperChain::new(),
        )
        .await
        .unwrap();
    handle.send_frame(Bytes::from("from b")).await.unwrap();
    assert_eq!(replies.recv().await.unwrap(), "from b");
    assert_eq!(seen_a.lock().unwrap().frames, ["from b"]);
    assert!(b.find(handle.local_addr(), handle.remote_addr()).is_some());
    // A handle works from another thread too.
    let h2 = handle.clone();
    std::thread::spawn(move || h2.send_frame_nowait(Bytes::from("from a thread")))
        .join()
        .unwrap();
    assert_eq!(replies.recv().await.unwrap(), "from a thread");
    handle.close();
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_rejecting_acceptor_closes_only_that_connection() {
    let manager = get_manager("tcp", "127.0.0.1:0").unwrap();
    manager
        .start(
            |t: &mut Tendril| -> Result<Echo, Reject> {
                let _ = t;
                Err(Reject::new("not today"))
            },
            WrapperChain::new(),
        )
        .await
        .unwrap();
    let mut client = TcpStream::connect(port_addr(&manager)).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(client.read_to_end(&mut buf).await.unwrap(), 0);
    assert!(manager.running());
    manager.stop().await;
}

#[tokio::test]
async fn a_user_registered_protocol_is_found_by_name() {
    /// TCP under another name, restricted to IPv6: built only from the public API.
    struct Tcp6;
    impl tendril_tokio::Transport for Tcp6 {
        fn proto(&self) -> tendril_core::Proto {
            tendril_core::Proto::stream("tcp6")
        }
        fn listen(
            &self,
            ctx: Arc<tendril_tokio::Shared>,
            endpoint: String,
            _wrapper: WrapperChain,
            acceptor: tendril_tokio::SharedAcceptor,
        ) -> futures::future::BoxFuture<'static, std::io::Result<tendril_core::Addr>> {
            Box::pin(async move {
                let listener = tokio::net::TcpListener::bind(&endpoint).await?;
                let local = listener.local_addr()?;
                if !local.is_ipv6() {
                    return Err(std::io::Error::other("tcp6 needs an IPv6 endpoint"));
                }
                let task_ctx = ctx.clone();
                let cancel = ctx.cancelled();
                ctx.spawn(async move {
                    loop {
                        let (stream, remote) = tokio::select! {
                            _ = cancel.cancelled() => break,
                            Ok(accepted) = listener.accept() => accepted,
                        };
                        // Any connected socket becomes a stream the kit drives.
                        let Ok(io) = stream
                            .into_std()
                            .and_then(|s| task_ctx.runtime().stream(s.into()))
                        else {
                            continue;
                        };
                        let _ = tendril_tokio::spawn_stream(
                            &task_ctx,
                            io,
                            local.into(),
                            remote.into(),
                            &acceptor,
                        );
                    }
                });
                Ok(local.into())
            })
        }
        fn connect(
            &self,
            _ctx: Arc<tendril_tokio::Shared>,
            _local: String,
            _target: String,
            _wrapper: WrapperChain,
            _acceptor: tendril_tokio::SharedAcceptor,
        ) -> futures::future::BoxFuture<'static, std::io::Result<tendril_tokio::TendrilHandle>>
        {
            Box::pin(async { Err(std::io::Error::other("listen only")) })
        }
    }
    tendril_tokio::register("tcp6", Arc::new(Tcp6));
    assert!(tendril_tokio::protocols().contains(&"tcp6".to_string()));
    let (manager, seen, _closed) = line_echo("tcp6", "[::1]:0").await;
    assert_eq!(manager.proto().name(), "tcp6");
    let mut client = TcpStream::connect(port_addr(&manager)).await.unwrap();
    client.write_all(b"six\r\n").await.unwrap();
    assert_eq!(read_exactly(&mut client, 5).await, b"six\r\n");
    assert_eq!(seen.lock().unwrap().frames, ["six"]);
    manager.stop().await;
    assert!(get_manager("nope", "").is_err());
}

#[cfg(unix)]
#[tokio::test]
async fn unnamed_unix_clients_are_all_tracked_and_stop_returns() {
    let dir = std::env::temp_dir().join(format!("tendril-unix2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("two.sock");
    let (manager, _seen, _closed) = line_echo("unix", path.to_str().unwrap()).await;
    let mut clients = Vec::new();
    for i in 0..2 {
        let mut c = tokio::net::UnixStream::connect(&path).await.unwrap();
        let line = format!("client {i}\r\n");
        c.write_all(line.as_bytes()).await.unwrap();
        let mut buf = vec![0; line.len()];
        tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        clients.push(c);
    }
    assert_eq!(manager.tendrils().len(), 2, "both share (path, unnamed)");
    tokio::time::timeout(Duration::from_secs(10), manager.stop())
        .await
        .expect("stop() returned");
}

#[tokio::test]
async fn a_connect_only_udp_manager_gets_its_replies() {
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let manager = get_manager("udp", "").unwrap();
    let (tx, mut replies) = mpsc::unbounded_channel();
    struct Client(mpsc::UnboundedSender<Bytes>);
    impl Application for Client {
        fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            let _ = self.0.send(frame);
            Ok(())
        }
    }
    let handle = manager
        .connect(
            &peer.local_addr().unwrap().to_string(),
            move |_t: &mut Tendril| Ok(Client(tx.clone())),
            WrapperChain::new(),
        )
        .await
        .unwrap();
    handle.send_frame(Bytes::from("ping")).await.unwrap();
    // The peer answers whoever pinged it, from its own address.
    let got = tokio::task::spawn_blocking(move || {
        let mut buf = [0; 16];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        peer.send_to(b"pong", from).unwrap();
        buf[..n].to_vec()
    })
    .await
    .unwrap();
    assert_eq!(got, b"ping");
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.recv())
        .await
        .expect("the reply reached the tendril");
    assert_eq!(reply.unwrap(), "pong");
    manager.stop().await;
}
