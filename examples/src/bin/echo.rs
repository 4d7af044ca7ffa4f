//! An echo server: every frame received is sent back.
//!
//! ```sh
//! cargo run -p tendril-examples --bin echo -- --listen tcp://127.0.0.1:7000 --framer line
//! ```

use bytes::Bytes;
use clap::Parser;
use std::process::ExitCode;
use tendril_core::tls::TlsLayer;
use tendril_core::{AppError, Application, CloseReason, Config, Tendril};
use tendril_examples::{init_logging, parse_framer, server_tls, Scheme, Timeout, Url};
use tendril_net::{options, WrapperChain};

/// Echo every frame back to its sender.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Where to listen: tcp://HOST:PORT, udp://HOST:PORT, unix:///PATH or tls://HOST:PORT.
    #[arg(long)]
    listen: Url,
    /// The framer: identity, chunk:N, line, line:lf, delimiter:HEX, length:u16be, netstring,
    /// cobs, cobs:zpe, stuffing.
    #[arg(long, default_value = "line")]
    framer: String,
    /// PEM certificate chain for tls:// (a self-signed one is made when absent).
    #[arg(long)]
    tls_cert: Option<String>,
    /// PEM private key for tls://.
    #[arg(long)]
    tls_key: Option<String>,
    /// Close a connection (or forget a UDP peer) that sent nothing for this long (`off` for
    /// never).
    #[arg(long, default_value = "5m")]
    idle_timeout: Timeout,
    /// Close a connection whose frame, once begun, is not complete after this long (a peer
    /// trickling bytes: slowloris).
    #[arg(long, default_value = "30s")]
    frame_timeout: Timeout,
    /// Close a tls:// connection whose handshake is not done after this long.
    #[arg(long, default_value = "10s")]
    handshake_timeout: Timeout,
}

struct Echo;

impl Application for Echo {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        t.send_frame(frame)?;
        Ok(())
    }

    fn closed(&mut self, t: &Tendril, reason: &CloseReason) {
        tracing::info!(peer = %t.remote_addr(), %reason, "closed");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    parse_framer(&args.framer)?;
    let tls = match args.listen.scheme {
        Scheme::Tls => Some(server_tls(
            args.tls_cert.as_deref(),
            args.tls_key.as_deref(),
        )?),
        _ => None,
    };
    let manager = tendril_tokio::get_manager(args.listen.scheme.proto(), &args.listen.address)
        .map_err(|e| e.to_string())?;
    let mut config = Config::default();
    config.idle_timeout = args.idle_timeout.0;
    config.frame_timeout = args.frame_timeout.0;
    config.handshake_timeout = args.handshake_timeout.0;
    manager.set_config(config);
    let spec = args.framer.clone();
    let wrapper = match args.listen.scheme {
        Scheme::Tcp | Scheme::Tls => WrapperChain::new().chain(options::nodelay(true)),
        _ => WrapperChain::new(),
    };
    manager
        .start(
            move |t: &mut Tendril| {
                // The spec was checked above; a fresh framer per connection and direction.
                let recv = parse_framer(&spec).map_err(tendril_core::Reject::new)?;
                let send = parse_framer(&spec).map_err(tendril_core::Reject::new)?;
                t.set_recv_framer_boxed(recv);
                t.set_send_framer_boxed(send);
                if let Some(config) = &tls {
                    let layer = TlsLayer::server(config.clone())
                        .map_err(|e| tendril_core::Reject::new(e.to_string()))?;
                    t.wrap(layer);
                }
                tracing::info!(peer = %t.remote_addr(), proto = %t.proto(), "accepted");
                Ok(Echo)
            },
            wrapper,
        )
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen.address))?;
    let local = manager
        .local_addr()
        .ok_or("the manager did not report its address")?;
    let stop = tendril_examples::shutdown_signal().map_err(|e| e.to_string())?;
    println!("listening on {local}");
    stop.await;
    tracing::info!("stopping");
    manager.stop().await;
    Ok(())
}
