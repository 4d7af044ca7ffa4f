//! The async-std / smol driver over loopback (127.0.0.1 and ::1 only).
//!
//! Every scenario is an `async fn` run twice: once under `async_std::task::block_on` with the
//! managers' tasks on async-std's executor, once under `smol::block_on` with them on smol's.
//! Nothing sleeps to synchronise; every wait is bounded by [`within`].

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt};
use rustls::pki_types::ServerName;
use smol::channel::{unbounded, Receiver, Sender};
use smol::net::TcpStream;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tendril_async_std::{get_manager, Manager, Spawner, WrapperChain};
use tendril_core::tls::TlsLayer;
use tendril_core::{AppError, Application, CloseReason, Line, Reject, Tendril};

/// The executor a scenario runs under.
#[derive(Debug, Clone, Copy)]
enum Rt {
    AsyncStd,
    Smol,
}

impl Rt {
    /// The managers' spawner for this executor.
    fn spawner(self) -> Spawner {
        match self {
            Rt::AsyncStd => Spawner::new(|task| {
                async_std::task::spawn(task);
            }),
            Rt::Smol => Spawner::new(|task| smol::spawn(task).detach()),
        }
    }

    /// A manager whose tasks run on this executor.
    fn manager(self, proto: &str, endpoint: &str) -> Manager {
        let manager = get_manager(proto, endpoint).unwrap();
        manager.set_spawner(self.spawner());
        manager
    }
}

/// `future`'s output, failing (instead of hanging) if it does not come within 10 s.
async fn within<T>(future: impl Future<Output = T>) -> T {
    let timeout = async {
        async_io::Timer::after(Duration::from_secs(10)).await;
        panic!("nothing happened within 10 s");
    };
    futures::pin_mut!(timeout);
    futures::pin_mut!(future);
    match futures::future::select(future, timeout).await {
        futures::future::Either::Left((out, _)) => out,
        futures::future::Either::Right((never, _)) => never,
    }
}

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
            let _ = tx.try_send(reason.to_string());
        }
    }
}

fn port_addr(manager: &Manager) -> std::net::SocketAddr {
    manager.local_addr().unwrap().ip().unwrap()
}

/// Read `n` bytes, failing (instead of hanging) if they do not come within 10 s.
async fn read_exactly<S: futures::AsyncRead + Unpin>(stream: &mut S, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    within(stream.read_exact(&mut buf)).await.unwrap();
    buf
}

/// Read to EOF within 10 s.
async fn read_to_end<S: futures::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut buf = Vec::new();
    within(stream.read_to_end(&mut buf)).await.unwrap();
    buf
}

async fn next_close(closed: &Receiver<String>) -> String {
    within(closed.recv()).await.unwrap()
}

// ---- scenarios ---------------------------------------------------------------------------

/// Forwards every frame to a channel.
struct Client(Sender<Bytes>);

impl Application for Client {
    fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        let _ = self.0.try_send(frame);
        Ok(())
    }
}

async fn tls_echo_between_a_server_and_a_connected_client(rt: Rt) {
    let (server_config, client_config) = tendril_core::testkit::tls::pair(0);
    let server = rt.manager("tcp", "127.0.0.1:0");
    let seen = Shared::default();
    let (closed_tx, server_closed) = unbounded();
    let s = seen.clone();
    server
        .start(
            move |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                t.set_send_framer(Line::crlf());
                t.wrap(
                    TlsLayer::server(server_config.clone())
                        .map_err(|e| Reject::new(e.to_string()))?,
                );
                Ok(Echo {
                    seen: s.clone(),
                    closed_tx: Some(closed_tx.clone()),
                })
            },
            WrapperChain::new(),
        )
        .await
        .unwrap();

    let client = rt.manager("tcp", "");
    let (tx, replies) = unbounded();
    let handle = client
        .connect(
            &port_addr(&server).to_string(),
            move |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                t.set_send_framer(Line::crlf());
                Ok(Client(tx.clone()))
            },
            WrapperChain::new(),
        )
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    assert!(handle.wrap(TlsLayer::client(client_config, name).unwrap()));
    // Queued behind the wrap: it leaves encrypted, once the handshake is done.
    within(handle.send_frame(Bytes::from("hello over tls")))
        .await
        .unwrap();
    within(handle.send_frame(Bytes::from("and again")))
        .await
        .unwrap();
    assert_eq!(within(replies.recv()).await.unwrap(), "hello over tls");
    assert_eq!(within(replies.recv()).await.unwrap(), "and again");
    assert_eq!(seen.lock().unwrap().frames, ["hello over tls", "and again"]);

    handle.close();
    assert_eq!(next_close(&server_closed).await, "closed by the peer");
    within(client.stop()).await;
    within(server.stop()).await;
    assert!(handle.is_closed());
}

async fn the_default_spawner_serves_under_either_block_on(_rt: Rt) {
    let manager = get_manager("tcp", "127.0.0.1:0").unwrap();
    let (tx, closed) = unbounded();
    manager
        .start(
            move |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                t.set_send_framer(Line::crlf());
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
    client.write_all(b"default\r\n").await.unwrap();
    assert_eq!(read_exactly(&mut client, 9).await, b"default\r\n");
    within(manager.stop()).await;
    assert_eq!(next_close(&closed).await, "closed locally");
    assert!(read_to_end(&mut client).await.is_empty());
}

macro_rules! under_both_executors {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        /// The scenarios under `async_std::task::block_on`, tasks on async-std's executor.
        mod async_std_executor {
            $( $(#[$attr])* #[test] fn $name() { async_std::task::block_on(super::$name(super::Rt::AsyncStd)); } )*
        }
        /// The scenarios under `smol::block_on`, tasks on smol's executor.
        mod smol_executor {
            $( $(#[$attr])* #[test] fn $name() { smol::block_on(super::$name(super::Rt::Smol)); } )*
        }
    };
}

under_both_executors!(
    tls_echo_between_a_server_and_a_connected_client,
    the_default_spawner_serves_under_either_block_on,
);
