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
