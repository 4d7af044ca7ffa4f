//! TLS as a [`Layer`], on rustls's own sans-IO API (feature `rustls`).

use bytes::{Buf, BytesMut};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::sync::Arc;

use crate::{Layer, LayerError, Outgoing};

/// A TLS client or server layer.
///
/// Works at any point of a connection: from the acceptor (TLS from the first byte) or from
/// inside `recv_frame` (STARTTLS), see [`Tendril::wrap`](crate::Tendril::wrap). Certificates are
/// verified as the rustls configuration says; rustls's client configurations verify the server
/// by default. A TLS failure closes the connection with [`CloseReason::Layer`](crate::CloseReason::Layer),
/// whose message names the TLS error, after the alert was sent.
///
/// ```
/// use std::sync::Arc;
/// use tendril_core::tls::TlsLayer;
///
/// # fn config() -> Arc<rustls::ServerConfig> {
/// #     let key = rcgen::KeyPair::generate().unwrap();
/// #     let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
/// #     let provider = Arc::new(rustls::crypto::ring::default_provider());
/// #     Arc::new(rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap()
/// #         .with_no_client_auth()
/// #         .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into())).unwrap())
/// # }
/// let server_config: Arc<rustls::ServerConfig> = config();
/// let layer = TlsLayer::server(server_config).unwrap();
/// assert!(tendril_core::Layer::is_handshaking(&layer));
/// ```
pub struct TlsLayer {
    conn: Connection,
    peer_closed: bool,
}

impl std::fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsLayer")
            .field("client", &matches!(self.conn, Connection::Client(_)))
            .field("handshaking", &self.conn.is_handshaking())
            .finish_non_exhaustive()
    }
}

impl TlsLayer {
    /// A TLS server.
    pub fn server(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(TlsLayer {
            conn: ServerConnection::new(config)?.into(),
            peer_closed: false,
        })
    }

    /// A TLS client connecting to `server_name` (checked against the server's certificate).
    pub fn client(
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Result<Self, rustls::Error> {
        Ok(TlsLayer {
            conn: ClientConnection::new(config, server_name)?.into(),
            peer_closed: false,
        })
    }

    /// The underlying rustls connection (negotiated ALPN, peer certificates, …).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

fn tls_error(e: impl std::error::Error + Send + Sync + 'static) -> LayerError {
    LayerError::from_source("TLS", e)
}

/// Appends what rustls writes to an [`Outgoing`].
struct Append<'a>(&'a mut Outgoing);

impl Write for Append<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.put_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Layer for TlsLayer {
    fn recv(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> Result<(), LayerError> {
        while !input.is_empty() {
            let mut records = &input[..];
            let n = self.conn.read_tls(&mut records).map_err(tls_error)?;
            input.advance(n);
            let state = self.conn.process_new_packets().map_err(tls_error)?;
            let plaintext = state.plaintext_bytes_to_read();
            if plaintext > 0 {
                let start = output.len();
                output.resize(start + plaintext, 0);
                self.conn
                    .reader()
                    .read_exact(&mut output[start..])
                    .map_err(tls_error)?;
            }
            if state.peer_has_closed() {
                self.peer_closed = true;
            }
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    fn send(&mut self, input: &mut Outgoing, output: &mut Outgoing) -> Result<(), LayerError> {
        while input.has_remaining() {
            let n = self.conn.writer().write(input.chunk()).map_err(tls_error)?;
            if n == 0 {
                break;
            }
            input.advance(n);
        }
        while self.conn.wants_write() {
            self.conn
                .write_tls(&mut Append(output))
                .map_err(tls_error)?;
        }
        Ok(())
    }

    fn close(&mut self) {
        self.conn.send_close_notify();
    }

    fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    fn peer_closed(&self) -> bool {
        self.peer_closed
    }
}
