//! An echo server: every frame received is sent back.
//!
//! ```sh
//! cargo run -p tendril-examples --bin echo -- --listen tcp://127.0.0.1:7000 --framer line
//! # on io_uring (Linux 6.0 or later), two shards sharing the port with SO_REUSEPORT
//! cargo run -p tendril-examples --bin echo -- --listen tcp://127.0.0.1:7000 --driver uring --shards 2
//! ```
//!
//! `--driver` picks the runtime under the manager: `tokio` (the default) or `uring`
//! (`tendril-uring`; where io_uring cannot be used, echo exits with one line naming why).
//! `--shards N` runs N shard threads, each listening on its own `SO_REUSEPORT` socket and
//! serving each connection (or UDP peer) it accepts from start to end. With `tokio` and one
//! shard (the default) the manager runs on the binary's own multi-threaded Tokio runtime.

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use std::process::ExitCode;
use tendril_core::tls::TlsLayer;
use tendril_core::{AppError, Application, CloseReason, Config, Tendril};
use tendril_examples::{init_logging, parse_framer, server_tls, Scheme, Timeout, Url};
use tendril_net::runtime::Manager;
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
    /// The driver the manager runs on.
    #[arg(long, value_enum, default_value_t = Driver::Tokio)]
    driver: Driver,
    /// Shard threads, each with its own SO_REUSEPORT listening socket (TCP, UDP), serving each
    /// connection or UDP peer on one shard. With tokio, 1 means the binary's own multi-threaded
    /// Tokio runtime.
    #[arg(long, default_value_t = 1, value_parser = parse_shards)]
    shards: usize,
}

/// `--shards`: a whole number, at least 1.
fn parse_shards(s: &str) -> Result<usize, String> {
    match s.parse() {
        Ok(0) => Err("at least one shard is needed".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a number of shards")),
    }
}

/// The runtime a manager runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Driver {
    /// Tokio (tendril-tokio).
    Tokio,
    /// io_uring (tendril-uring): Linux 6.0 or later; echo exits naming why where it cannot run.
    Uring,
}

/// A manager for `proto` at `address` on `driver` with `shards` shards.
fn manager(driver: Driver, shards: usize, proto: &str, address: &str) -> Result<Manager, String> {
    match (driver, shards) {
        (Driver::Tokio, 1) => tendril_tokio::get_manager(proto, address),
        (Driver::Tokio, _) => tendril_tokio::get_sharded_manager(proto, address, shards),
        // Its futures run on any executor (the I/O is on the ring's shard threads), so this
        // binary's Tokio runtime awaits them as it does the Tokio driver's.
        (Driver::Uring, _) => tendril_uring::get_sharded_manager(proto, address, shards),
    }
    .map_err(|e| format!("--driver {}: {e}", driver.name()))
}

impl Driver {
    /// The name `--driver` takes.
    fn name(self) -> &'static str {
        match self {
            Driver::Tokio => "tokio",
            Driver::Uring => "uring",
        }
    }
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
    let manager = manager(
        args.driver,
        args.shards,
        args.listen.scheme.proto(),
        &args.listen.address,
    )?;
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
