//! Connections as `Stream` + `Sink`, over loopback.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tendril_core::{LengthPrefixed, Line, Tendril};
use tendril_tokio::{get_manager, WrapperChain};

fn lines(t: &mut Tendril) -> Result<(), tendril_core::Reject> {
    t.set_recv_framer(Line::crlf());
    t.set_send_framer(Line::crlf());
    Ok(())
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn a_framed_server_and_client_talk_in_async_code() {
    let server = get_manager("tcp", "127.0.0.1:0").unwrap();
    let mut incoming = server
        .start_framed(lines, WrapperChain::new())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Some(mut conn) = incoming.next().await {
            tokio::spawn(async move {
                while let Some(frame) = conn.next().await {
                    let reply = Bytes::from(format!("echo {}", String::from_utf8_lossy(&frame)));
                    if conn.send(reply).await.is_err() {
                        break;
                    }
                }
                let _ = conn.close().await;
            });
        }
    });
    let client = get_manager("tcp", "").unwrap();
    let mut conn = within(client.connect_framed(&addr, lines)).await.unwrap();
    for i in 0..100 {
        within(conn.send(Bytes::from(format!("n{i}"))))
            .await
            .unwrap();
    }
    for i in 0..100 {
        let frame = within(conn.next()).await.unwrap();
        assert_eq!(frame, format!("echo n{i}"));
    }
    // Closing the sink half-closes: the server sees EOF, closes, and the stream ends.
    within(conn.close()).await.unwrap();
    assert_eq!(within(conn.next()).await, None);
    assert_eq!(conn.close_reason().as_deref(), Some("closed by the peer"));
    server.stop().await;
    client.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_holds_a_fast_peer_back() {
    let server = get_manager("tcp", "127.0.0.1:0").unwrap();
    let mut incoming = server
        .start_framed(
            |t: &mut Tendril| {
                t.set_recv_framer(LengthPrefixed::u32_be());
                t.set_send_framer(LengthPrefixed::u32_be());
                Ok(())
            },
            WrapperChain::new(),
        )
        .await
        .unwrap();
    let addr = server.local_addr().unwrap().ip().unwrap();
    // A raw client writes 64 MiB of 64 KiB frames without reading anything back.
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut frame = (65536u32).to_be_bytes().to_vec();
        frame.extend(vec![1u8; 65536]);
        let mut sent = 0usize;
        for _ in 0..1024 {
            if tokio::time::timeout(Duration::from_millis(500), stream.write_all(&frame))
                .await
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        (sent, stream)
    });
    let mut conn = within(incoming.next()).await.unwrap();
    // Take nothing for a while: the writer must get stuck well before 1024 frames.
    let (sent, stream) = within(writer).await.unwrap();
    assert!(
        sent < 1024,
        "the peer was never held back ({sent} frames sent)"
    );
    // Now consume: frames flow again.
    for _ in 0..sent {
        let frame = within(conn.next()).await.unwrap();
        assert_eq!(frame.len(), 65536);
    }
    drop(stream);
    server.stop().await;
}
