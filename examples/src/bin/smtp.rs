//! An SMTP server (RFC 5321) that stores each message it accepts as a file in a directory.
//!
//! ```sh
//! cargo run -p tendril-examples --bin smtp -- --listen 127.0.0.1:2525 --maildir /tmp/mail
//! swaks --server 127.0.0.1:2525 --to you@example.com --from me@example.com --pipeline
//! ```
//!
//! The server itself is [`tendril_examples::smtp`]: framer switching for `DATA`, PIPELINING,
//! SIZE, 8BITMIME and STARTTLS (offered when `--tls-cert`/`--tls-key` are given). This binary
//! parses its arguments, stores messages with [`Maildir`] — a temporary file in `--maildir`,
//! renamed to `<unix-millis>.<pid>.<n>.eml`, the envelope on top as headers — and runs the
//! sessions on Tokio.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tendril_core::{Config, Tendril};
use tendril_examples::smtp::{Maildir, Session, Settings, DEFAULT_MAX_SIZE};
use tendril_examples::{init_logging, server_tls, Timeout};
use tendril_net::{options, WrapperChain};

/// Receive mail over SMTP and store each message as a file.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Where to listen: HOST:PORT (port 0 picks a free one).
    #[arg(long)]
    listen: String,
    /// The directory to store messages in (created if missing).
    #[arg(long)]
    maildir: PathBuf,
    /// PEM certificate chain; enables STARTTLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<String>,
    /// PEM private key for STARTTLS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<String>,
    /// The largest message accepted, in bytes (advertised as SIZE).
    #[arg(long, default_value_t = DEFAULT_MAX_SIZE)]
    max_size: usize,
    /// The name the server gives itself in its greeting and `Received:` lines.
    #[arg(long, default_value = "localhost")]
    hostname: String,
    /// Refuse MAIL with 530 until the client has done STARTTLS (needs a certificate).
    #[arg(long, requires = "tls_cert")]
    require_tls: bool,
    /// Close a session that sends no command for this long (RFC 5321 §4.5.3.2.7: at least
    /// 5 minutes; `off` for never).
    #[arg(long, default_value = "5m")]
    command_timeout: Timeout,
    /// Close a session whose message body stops arriving for this long (RFC 5321 §4.5.3.2.5's
    /// data block time, 3 minutes).
    #[arg(long, default_value = "3m")]
    data_timeout: Timeout,
    /// Close a session whose STARTTLS handshake is not done after this long.
    #[arg(long, default_value = "10s")]
    handshake_timeout: Timeout,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smtp: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if args.max_size == 0 {
        return Err("--max-size must be at least 1".into());
    }
    let store = Maildir::create(&args.maildir)
        .map_err(|e| format!("cannot create {}: {e}", args.maildir.display()))?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(server_tls(Some(cert.as_str()), Some(key.as_str()))?),
        _ => None,
    };
    let settings = Arc::new(Settings {
        max_size: args.max_size,
        tls,
        require_tls: args.require_tls,
        command_timeout: args.command_timeout.0,
        data_timeout: args.data_timeout.0,
        ..Settings::new(args.hostname, store)
    });
    let address = args.listen.strip_prefix("tcp://").unwrap_or(&args.listen);
    let manager = tendril_tokio::get_manager("tcp", address).map_err(|e| e.to_string())?;
    // Each session sets its idle timeout (by phase) itself.
    let mut config = Config::default();
    config.handshake_timeout = args.handshake_timeout.0;
    manager.set_config(config);
    manager
        .start(
            move |t: &mut Tendril| {
                tracing::info!(peer = %t.remote_addr(), "accepted");
                Session::accept(t, settings.clone())
                    .map_err(|e| tendril_core::Reject::new(e.to_string()))
            },
            WrapperChain::new().chain(options::nodelay(true)),
        )
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
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
