//! TLS and STARTTLS through the core's layer, over loopback sockets.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rustls::pki_types::{PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tendril_core::tls::TlsLayer;
use tendril_core::{AppError, Application, Event, Line, Tendril};
use tendril_tokio::{get_manager, WrapperChain};
use tokio::sync::mpsc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out")
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

#[tokio::test]
async fn tls_from_the_first_byte_over_tcp() {
    let (server_config, client_config) = configs();
    let server = get_manager("tcp", "127.0.0.1:0").unwrap();
    let mut incoming = server
        .start_framed(
            move |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                t.set_send_framer(Line::crlf());
                t.wrap(TlsLayer::server(server_config.clone()).unwrap());
                Ok(())
            },
            WrapperChain::new(),
        )
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(mut conn) = incoming.next().await {
            tokio::spawn(async move {
                while let Some(frame) = conn.next().await {
                    let _ = conn.send(frame).await;
                }
            });
        }
    });
    let client = get_manager("tcp", "").unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let mut conn = within(client.connect_framed(&addr, move |t: &mut Tendril| {
        t.set_recv_framer(Line::crlf());
        t.set_send_framer(Line::crlf());
        t.wrap(TlsLayer::client(client_config, localhost()).unwrap());
        Ok(())
    }))
    .await
    .unwrap();
    within(conn.send(Bytes::from("secret"))).await.unwrap();
    assert_eq!(within(conn.next()).await.unwrap(), "secret");
    within(conn.close()).await.unwrap();
    assert_eq!(within(conn.next()).await, None);
    assert_eq!(conn.close_reason().as_deref(), Some("closed by the peer"));
    server.stop().await;
}

/// Upgrades on STARTTLS; reports what it saw.
struct StartTls {
    config: Arc<rustls::ServerConfig>,
    seen: mpsc::UnboundedSender<String>,
}

impl Application for StartTls {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        let text = String::from_utf8_lossy(&frame).into_owned();
        let _ = self.seen.send(text.clone());
        if text == "STARTTLS" {
            t.send_frame("220 go ahead".into())?;
            t.wrap(TlsLayer::server(self.config.clone())?);
        } else {
            t.send_frame(Bytes::from(format!("250 {text}")))?;
        }
        Ok(())
    }

    fn event(&mut self, _: &mut Tendril, event: &Event) {
        let _ = self.seen.send(format!("{event:?}"));
    }
}

#[tokio::test]
async fn starttls_upgrades_a_live_connection_and_drops_pipelined_plaintext() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (server_config, client_config) = configs();
    let server = get_manager("tcp", "127.0.0.1:0").unwrap();
    let (tx, mut seen) = mpsc::unbounded_channel();
    server
        .start(
            move |t: &mut Tendril| {
                t.set_recv_framer(Line::crlf());
                t.set_send_framer(Line::crlf());
                Ok(StartTls {
                    config: server_config.clone(),
                    seen: tx.clone(),
                })
            },
            WrapperChain::new(),
        )
        .await
        .unwrap();
    // A raw client: STARTTLS with an injected command in the same packet.
    let addr = server.local_addr().unwrap().ip().unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(b"STARTTLS\r\nRCPT TO:<victim@example.com>\r\n")
        .await
        .unwrap();
    let mut line = String::new();
    within(stream.read_line(&mut line)).await.unwrap();
    assert_eq!(line, "220 go ahead\r\n");
    assert_eq!(within(seen.recv()).await.unwrap(), "STARTTLS");
    assert_eq!(within(seen.recv()).await.unwrap(), "PlaintextDiscarded(30)");
    // Now a real TLS client on the same socket.
    let stream = stream.into_inner();
    let connector = TlsClient::new(client_config);
    let mut tls = connector.handshake(stream).await;
    tls.write_line("after tls").await;
    assert_eq!(tls.read_line().await, "250 after tls");
    assert_eq!(within(seen.recv()).await.unwrap(), "after tls");
    server.stop().await;
}

/// A tiny blocking-free TLS client over a tokio stream, on rustls directly (no tokio-rustls).
struct TlsClient {
    config: Arc<rustls::ClientConfig>,
}

struct TlsStream {
    conn: rustls::ClientConnection,
    stream: tokio::net::TcpStream,
    plain: Vec<u8>,
}

impl TlsClient {
    fn new(config: Arc<rustls::ClientConfig>) -> Self {
        TlsClient { config }
    }

    async fn handshake(self, stream: tokio::net::TcpStream) -> TlsStream {
        let conn = rustls::ClientConnection::new(self.config, localhost()).unwrap();
        let mut tls = TlsStream {
            conn,
            stream,
            plain: Vec::new(),
        };
        while tls.conn.is_handshaking() {
            tls.flush().await;
            if tls.conn.is_handshaking() {
                tls.read_some().await;
            }
        }
        tls.flush().await;
        tls
    }
}

impl TlsStream {
    async fn flush(&mut self) {
        use tokio::io::AsyncWriteExt;
        while self.conn.wants_write() {
            let mut out = Vec::new();
            self.conn.write_tls(&mut out).unwrap();
            self.stream.write_all(&out).await.unwrap();
        }
    }

    async fn read_some(&mut self) {
        use std::io::Read;
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0; 16384];
        let n = within(self.stream.read(&mut buf)).await.unwrap();
        assert!(n > 0, "the server closed during TLS");
        self.conn.read_tls(&mut &buf[..n]).unwrap();
        let state = self.conn.process_new_packets().unwrap();
        let mut plain = vec![0; state.plaintext_bytes_to_read()];
        self.conn.reader().read_exact(&mut plain).unwrap();
        self.plain.extend(plain);
    }

    async fn write_line(&mut self, line: &str) {
        use std::io::Write;
        self.conn.writer().write_all(line.as_bytes()).unwrap();
        self.conn.writer().write_all(b"\r\n").unwrap();
        self.flush().await;
    }

    async fn read_line(&mut self) -> String {
        loop {
            if let Some(pos) = self.plain.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.plain.drain(..pos + 2).collect();
                return String::from_utf8_lossy(&line[..pos]).into_owned();
            }
            self.read_some().await;
        }
    }
}
