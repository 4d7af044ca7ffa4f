//! The Tokio driver over loopback (127.0.0.1 and ::1 only).

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tendril_core::{AppError, Application, CloseReason, Line, Reject, Tendril};
use tendril_tokio::{get_manager, Manager, WrapperChain};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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
