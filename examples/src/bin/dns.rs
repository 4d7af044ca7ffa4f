//! An authoritative DNS server for one zone file, over UDP and TCP on the same port.
//!
//! ```sh
//! cargo run -p tendril-examples --bin dns -- --listen 127.0.0.1:5353
//! dig @127.0.0.1 -p 5353 www.example.test A +norec
//! dig @127.0.0.1 -p 5353 big.example.test TXT     # truncated over UDP, dig retries over TCP
//! ```

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tendril_examples::dns::{listen, Zone};
use tendril_examples::{init_logging, shutdown_signal, Timeout};

/// The zone served when `--zone` is not given.
const DEFAULT_ZONE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/zones/example.test.zone");

/// Serve one DNS zone, authoritatively, over UDP and TCP on the same port.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Where to listen: HOST:PORT, for both UDP and TCP (port 0 picks a free one for both).
    #[arg(long)]
    listen: String,
    /// The zone, in master-file format (RFC 1035 §5).
    #[arg(long, default_value = DEFAULT_ZONE)]
    zone: PathBuf,
    /// Close a TCP connection that sent nothing for this long (RFC 7766 §6.2.3 asks for a few
    /// seconds; `off` for never).
    #[arg(long, default_value = "10s")]
    tcp_idle_timeout: Timeout,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dns: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let zone = Zone::load(&args.zone).map_err(|e| e.to_string())?;
    tracing::info!(origin = %zone.origin(), records = zone.len(), file = %args.zone.display(), "zone loaded");
    let server = listen(&args.listen, Arc::new(zone), args.tcp_idle_timeout.0).await?;
    // Catch the signals before announcing the address: a Ctrl-C right after the line must
    // stop the server cleanly, not kill it.
    let stop = shutdown_signal().map_err(|e| format!("cannot catch signals: {e}"))?;
    println!("listening on {}", server.addr);
    stop.await;
    tracing::info!("stopping");
    server.stop().await;
    Ok(())
}
