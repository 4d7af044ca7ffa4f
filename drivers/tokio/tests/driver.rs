//! The Tokio driver over loopback (127.0.0.1 and ::1 only).

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tendril_core::{AppError, Application, CloseReason, Line, Tendril};
use tendril_tokio::{get_manager, Manager, WrapperChain};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
