//! Shared pieces of the example binaries: framer specs, endpoint URLs, TLS set-up, logging;
//! and the servers behind the `dns` and `smtp` binaries, [`dns`] and [`smtp`], which tests can
//! run without sockets.

use bytes::Bytes;
use std::sync::Arc;
use tendril_core::{
    BoxFramer, Chunk, Cobs, Delimiter, Framer, Identity, LengthField, LengthPrefixed, Line,
    Netstring, Stuffing,
};

/// Parse a framer spec, as the binaries take it on the command line:
///
/// | spec | framer |
/// | --- | --- |
/// | `identity` | each read or datagram is a frame |
/// | `chunk:N` | N-byte records |
/// | `line`, `line:lf` | CRLF lines (one `\r` stripped), or bare-LF lines |
/// | `delimiter:HEX` | frames ended by the bytes in HEX, e.g. `delimiter:0d0a2e0d0a` |
/// | `length:FIELD` | a length prefix; FIELD is `u8`, `u16be`, `u16le`, `u32be`, `u32le`, `u64be`, `u64le` or `varint` |
/// | `netstring` | `len:data,` |
/// | `cobs`, `cobs:zpe` | COBS, `0x00`-delimited |
/// | `stuffing` | the original Tendril's byte stuffing with its default markers |
///
/// ```
/// let framer = tendril_examples::parse_framer("length:u16be").unwrap();
/// # let _ = framer;
/// assert!(tendril_examples::parse_framer("length:u24").is_err());
/// ```
pub fn parse_framer(spec: &str) -> Result<BoxFramer<Bytes>, String> {
    let (name, arg) = match spec.split_once(':') {
        Some((name, arg)) => (name, Some(arg)),
        None => (spec, None),
    };
    let framer = match (name, arg) {
        ("identity", None) => Identity::new().boxed(),
        ("chunk", Some(n)) => {
            let n: usize = n
                .parse()
                .map_err(|_| format!("chunk size {n:?} is not a number"))?;
            if n == 0 {
                return Err("chunk size must be at least 1".into());
            }
            Chunk::new(n).boxed()
        }
        ("line", None | Some("crlf")) => Line::crlf().boxed(),
        ("line", Some("lf")) => Line::lf().boxed(),
        ("delimiter", Some(hex)) => {
            let bytes = decode_hex(hex)?;
            Delimiter::new(&bytes).map_err(|e| e.to_string())?.boxed()
        }
        ("length", Some(field)) => {
            let field = match field {
                "u8" => LengthField::U8,
                "u16be" => LengthField::U16Be,
                "u16le" => LengthField::U16Le,
                "u32be" => LengthField::U32Be,
                "u32le" => LengthField::U32Le,
                "u64be" => LengthField::U64Be,
                "u64le" => LengthField::U64Le,
                "varint" => LengthField::Varint,
                other => return Err(format!("unknown length field {other:?}")),
            };
            LengthPrefixed::new(field).boxed()
        }
        ("netstring", None) => Netstring::new().boxed(),
        ("cobs", None) => Cobs::new().boxed(),
        ("cobs", Some("zpe")) => Cobs::zpe().boxed(),
        ("stuffing", None) => Stuffing::default().boxed(),
        _ => {
            return Err(format!(
                "unknown framer {spec:?}; try identity, chunk:N, line, line:lf, delimiter:HEX, \
                 length:u16be, netstring, cobs, cobs:zpe or stuffing"
            ))
        }
    };
    Ok(framer)
}

/// Decode a hex string (`0d0a`, also with `:` or spaces between bytes).
pub fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !matches!(b, b':' | b' ' | b'-'))
        .collect();
    if digits.len() % 2 != 0 {
        return Err(format!("{text:?} has an odd number of hex digits"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| format!("{text:?} is not hex"))
        })
        .collect()
}

/// Encode bytes as lower-case hex.
pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An endpoint URL: `tcp://host:port`, `udp://host:port`, `unix:///path`, `tls://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The scheme.
    pub scheme: Scheme,
    /// `host:port` or the socket path.
    pub address: String,
}

/// The transport named by a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Unix-domain stream socket.
    Unix,
    /// TLS over TCP.
    Tls,
}

impl Scheme {
    /// The driver protocol that carries this scheme.
    pub fn proto(self) -> &'static str {
        match self {
            Scheme::Tcp | Scheme::Tls => "tcp",
            Scheme::Udp => "udp",
            Scheme::Unix => "unix",
        }
    }
}

impl std::str::FromStr for Url {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (scheme, address) = s
            .split_once("://")
            .ok_or_else(|| format!("{s:?} is not a URL like tcp://127.0.0.1:7000"))?;
        let scheme = match scheme {
            "tcp" => Scheme::Tcp,
            "udp" => Scheme::Udp,
            "unix" => Scheme::Unix,
            "tls" => Scheme::Tls,
            other => {
                return Err(format!(
                    "unknown scheme {other:?}; use tcp, udp, unix or tls"
                ))
            }
        };
        if address.is_empty() {
            return Err(format!("{s:?} has no address"));
        }
        Ok(Url {
            scheme,
            address: address.to_owned(),
        })
    }
}

/// A timeout given on the command line: `250ms`, `30s`, `5m`, `1h`, a plain number of seconds,
/// or `off` (also `0`) for none.
///
/// ```
/// use std::time::Duration;
/// use tendril_examples::Timeout;
///
/// assert_eq!("5m".parse::<Timeout>().unwrap().0, Some(Duration::from_secs(300)));
/// assert_eq!("off".parse::<Timeout>().unwrap().0, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Option<std::time::Duration>);

impl std::str::FromStr for Timeout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        use std::time::Duration;
        if s == "off" {
            return Ok(Timeout(None));
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a timeout like 30s, 5m or off"))?;
        let duration = match unit {
            "ms" => Duration::from_millis(n),
            "" | "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(format!("{s:?}: the unit must be ms, s, m or h")),
        };
        Ok(Timeout((!duration.is_zero()).then_some(duration)))
    }
}

/// Log to stderr; `RUST_LOG` picks the level (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server configuration from PEM files, or — when none are given — a fresh self-signed
/// certificate for `localhost` (printed to stderr as PEM so a client can trust it).
pub fn server_tls(
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (certs, key) = match (cert, key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("{cert}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{cert}: {e}"))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{key}: {e}"))?;
            (certs, key)
        }
        (None, None) => {
            let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
            let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
                .and_then(|p| p.self_signed(&key))
                .map_err(|e| e.to_string())?;
            tracing::info!("no --tls-cert given: using a self-signed certificate for localhost");
            eprintln!("{}", cert.pem());
            (
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
        }
        _ => return Err("give both --tls-cert and --tls-key, or neither".into()),
    };
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// A TLS client configuration trusting the certificates in `ca` (PEM).
pub fn client_tls(ca: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca}: {e}"))? {
        roots
            .add(cert.map_err(|e| format!("{ca}: {e}"))?)
            .map_err(|e| format!("{ca}: {e}"))?;
    }
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_spec_parses() {
        for spec in [
            "identity",
            "chunk:5",
            "line",
            "line:lf",
            "delimiter:0d0a2e0d0a",
            "length:u8",
            "length:u16be",
            "length:varint",
            "netstring",
            "cobs",
            "cobs:zpe",
            "stuffing",
        ] {
            assert!(parse_framer(spec).is_ok(), "{spec}");
        }
        for bad in [
            "chunk:0",
            "chunk:x",
            "delimiter:",
            "delimiter:0",
            "length:u24",
            "nope",
        ] {
            assert!(parse_framer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeouts_parse() {
        use std::time::Duration;
        for (text, expected) in [
            ("250ms", Some(Duration::from_millis(250))),
            ("30s", Some(Duration::from_secs(30))),
            ("30", Some(Duration::from_secs(30))),
            ("5m", Some(Duration::from_secs(300))),
            ("1h", Some(Duration::from_secs(3600))),
            ("0", None),
            ("off", None),
        ] {
            assert_eq!(text.parse::<Timeout>(), Ok(Timeout(expected)), "{text}");
        }
        for bad in ["", "s", "5x", "-1s", "1.5s"] {
            assert!(bad.parse::<Timeout>().is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_parse() {
        let url: Url = "unix:///tmp/x.sock".parse().unwrap();
        assert_eq!(
            (url.scheme, url.address.as_str()),
            (Scheme::Unix, "/tmp/x.sock")
        );
        assert!("ftp://x".parse::<Url>().is_err());
        assert!("127.0.0.1:80".parse::<Url>().is_err());
    }
}

pub mod dns;
pub mod smtp;

/// Ctrl-C (SIGINT) or SIGTERM, registered at once — call it before announcing the listening
/// address, so a signal sent right after the announcement is not missed.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
