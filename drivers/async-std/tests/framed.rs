//! Connections as `Stream` + `Sink`, over loopback, under smol and async-std.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tendril_async_std::{get_manager, Spawner, WrapperChain};
use tendril_core::{Line, Reject, Tendril};

fn lines(t: &mut Tendril) -> Result<(), Reject> {
    t.set_recv_framer(Line::crlf());
    t.set_send_framer(Line::crlf());
    Ok(())
}

/// Fail instead of hanging.
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    let timeout = async {
        async_io::Timer::after(Duration::from_secs(10)).await;
        panic!("timed out");
    };
    futures::pin_mut!(timeout);
    let f = std::pin::pin!(f);
    match futures::future::select(f, timeout).await {
        futures::future::Either::Left((value, _)) => value,
        futures::future::Either::Right((never, _)) => never,
    }
}

async fn echo_round_trip(spawner: fn() -> Spawner) {
    let server = get_manager("tcp", "127.0.0.1:0").unwrap();
    server.set_spawner(spawner());
    let mut incoming = server
        .start_framed(lines, WrapperChain::new())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let accept = async move {
        let mut conn = within(incoming.next()).await.unwrap();
        while let Some(frame) = conn.next().await {
            let reply = Bytes::from(format!("echo {}", String::from_utf8_lossy(&frame)));
            if conn.send(reply).await.is_err() {
                break;
            }
        }
        let _ = conn.close().await;
    };
    let client = get_manager("tcp", "").unwrap();
    client.set_spawner(spawner());
    let talk = async {
        let mut conn = within(client.connect_framed(&addr, lines)).await.unwrap();
        for i in 0..50 {
            within(conn.send(Bytes::from(format!("n{i}"))))
                .await
                .unwrap();
        }
        for i in 0..50 {
            assert_eq!(within(conn.next()).await.unwrap(), format!("echo n{i}"));
        }
        within(conn.close()).await.unwrap();
        assert_eq!(within(conn.next()).await, None);
        assert_eq!(conn.close_reason().as_deref(), Some("closed by the peer"));
    };
    futures::join!(accept, talk);
    server.stop().await;
    client.stop().await;
}

#[test]
fn framed_echo_under_smol() {
    smol::block_on(echo_round_trip(|| {
        Spawner::new(|task| smol::spawn(task).detach())
    }));
}

#[test]
fn framed_echo_under_async_std() {
    async_std::task::block_on(echo_round_trip(|| {
        Spawner::new(|task| {
            async_std::task::spawn(task);
        })
    }));
}
