//! A frame-aware netcat: connect to or listen on an endpoint, print every received frame on its
//! own line, send each line of stdin as one frame.
//!
//! ```sh
//! cargo run -p tendril-examples --bin tendril -- connect tcp://127.0.0.1:7000 --framer line
//! ```

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use tendril_core::tls::TlsLayer;
use tendril_core::{AppError, Application, CloseReason, Reject, Tendril};
use tendril_examples::{
    client_tls, decode_hex, encode_hex, init_logging, parse_framer, Scheme, Url,
};
use tendril_net::WrapperChain;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// Connect to URL.
    Connect,
    /// Listen on URL and talk to every peer that connects.
    Listen,
}

/// Look at framed traffic: print each received frame, send each stdin line as a frame.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// connect or listen.
    mode: Mode,
    /// tcp://HOST:PORT, udp://HOST:PORT, unix:///PATH or tls://HOST:PORT.
    url: Url,
    /// The receive framer (and the send framer unless --send-framer is given).
    #[arg(long, default_value = "line")]
    framer: String,
    /// A different framer for what is sent.
    #[arg(long)]
    send_framer: Option<String>,
    /// Print frames as hex, and read stdin lines as hex.
    #[arg(long)]
    hex: bool,
    /// For tls:// connect: PEM file of the certificates to trust (e.g. the echo server's
    /// self-signed one).
    #[arg(long)]
    tls_ca: Option<String>,
    /// For tls:// connect: the server name to verify (default: localhost).
    #[arg(long, default_value = "localhost")]
    tls_name: String,
}

/// Prints frames; reports the close.
struct Printer {
    hex: bool,
    prefix_peer: bool,
    done: mpsc::UnboundedSender<()>,
}

impl Application for Printer {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        let text = if self.hex {
            encode_hex(&frame)
        } else {
            String::from_utf8_lossy(&frame).into_owned()
        };
        let mut out = std::io::stdout().lock();
        if self.prefix_peer {
            write!(out, "{} ", t.remote_addr())?;
        }
        writeln!(out, "{text}")?;
        out.flush()?;
        Ok(())
    }

    fn closed(&mut self, t: &Tendril, reason: &CloseReason) {
        tracing::info!(peer = %t.remote_addr(), %reason, "closed");
        let _ = self.done.send(());
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tendril: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let recv_spec = args.framer.clone();
    let send_spec = args
        .send_framer
        .clone()
        .unwrap_or_else(|| args.framer.clone());
    parse_framer(&recv_spec)?;
    parse_framer(&send_spec)?;
    let tls = match (args.url.scheme, args.mode) {
        (Scheme::Tls, Mode::Connect) => {
            let ca = args
                .tls_ca
                .as_deref()
                .ok_or("tls:// connect needs --tls-ca FILE with the certificates to trust")?;
            Some(client_tls(ca)?)
        }
        _ => None,
    };
    let server_tls = match (args.url.scheme, args.mode) {
        (Scheme::Tls, Mode::Listen) => Some(tendril_examples::server_tls(None, None)?),
        _ => None,
    };
    let stop = tendril_examples::shutdown_signal().map_err(|e| e.to_string())?;
    tokio::pin!(stop);
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let hex = args.hex;
    let prefix_peer = matches!(args.mode, Mode::Listen) || args.url.scheme == Scheme::Udp;
    let tls_name = args.tls_name.clone();
    let acceptor = move |t: &mut Tendril| {
        t.set_recv_framer_boxed(parse_framer(&recv_spec).map_err(Reject::new)?);
        t.set_send_framer_boxed(parse_framer(&send_spec).map_err(Reject::new)?);
        if let Some(config) = &tls {
            let name = rustls::pki_types::ServerName::try_from(tls_name.clone())
                .map_err(|e| Reject::new(e.to_string()))?;
            t.wrap(TlsLayer::client(config.clone(), name).map_err(|e| Reject::new(e.to_string()))?);
        }
        if let Some(config) = &server_tls {
            t.wrap(TlsLayer::server(config.clone()).map_err(|e| Reject::new(e.to_string()))?);
        }
        Ok(Printer {
            hex,
            prefix_peer,
            done: done_tx.clone(),
        })
    };

    let proto = args.url.scheme.proto();
    let stdin = BufReader::new(tokio::io::stdin());
    let mut lines = stdin.lines();
    let encode = |line: String| -> Result<Bytes, String> {
        if hex {
            decode_hex(line.trim()).map(Bytes::from)
        } else {
            Ok(Bytes::from(line))
        }
    };
    match args.mode {
        Mode::Connect => {
            let manager = tendril_tokio::get_manager(proto, "").map_err(|e| e.to_string())?;
            let handle = manager
                .connect(&args.url.address, acceptor, WrapperChain::new())
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", args.url.address))?;
            let handle = Arc::new(handle);
            loop {
                tokio::select! {
                    line = lines.next_line() => match line.map_err(|e| e.to_string())? {
                        Some(line) => {
                            let frame = encode(line)?;
                            handle.send_frame(frame).await.map_err(|e| e.to_string())?;
                        }
                        None => {
                            // End of input: half-close and print replies until the peer closes.
                            handle.finish();
                            let _ = done.recv().await;
                            break;
                        }
                    },
                    _ = done.recv() => break,
                    _ = &mut stop => break,
                }
            }
            manager.stop().await;
        }
        Mode::Listen => {
            let manager =
                tendril_tokio::get_manager(proto, &args.url.address).map_err(|e| e.to_string())?;
            manager
                .start(acceptor, WrapperChain::new())
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", args.url.address))?;
            if let Some(local) = manager.local_addr() {
                println!("listening on {local}");
            }
            loop {
                tokio::select! {
                    line = lines.next_line() => match line.map_err(|e| e.to_string())? {
                        Some(line) => {
                            let frame = encode(line)?;
                            for handle in manager.tendrils() {
                                handle.send_frame_nowait(frame.clone());
                            }
                        }
                        None => break,
                    },
                    _ = &mut stop => break,
                }
            }
            manager.stop().await;
        }
    }
    Ok(())
}
