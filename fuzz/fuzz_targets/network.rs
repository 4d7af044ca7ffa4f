//! A line echo on the test kit's simulated network (`testkit::net`), with the faults chosen by
//! the fuzzer instead of drawn from presets: how often writes split and reads come a byte at a
//! time, how long bytes are in flight, whether and when a connection is reset or hung up on,
//! TLS or not, the watermarks, the frames, and how the client ends (finish, close or abort).
//! The network's own choices come from the input's seed.
//!
//! Invariants, beyond "no panic" and the kit's own check that `closed` reaches each application
//! exactly once:
//! - the server receives a prefix of what the client sent, in order (after a hang-up the last
//!   line may end early, at the EOF), and the client's echoes are a prefix of that;
//! - unless the network cut the connection or the client aborted, the server receives every
//!   line, and a client that only half-closed gets every echo back;
//! - once the network is quiet, both ends have closed, and none by a linger timeout (a close
//!   that can never finish).
//!
//! Every run starts the TLS random streams over (`Seeded::rewind`), so a crash replays.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use core::time::Duration;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use tendril_core::testkit::net::{Faults, Net};
use tendril_core::testkit::tls;
use tendril_core::tls::TlsLayer;
use tendril_core::{AppError, Application, Config, Line, Proto, Tendril};

/// At most this many lines per input, of at most this many bytes.
const MAX_LINES: usize = 64;
const MAX_LINE: usize = 300;

#[derive(Debug, Arbitrary)]
struct Input {
    seed: u64,
    short_writes: u8,
    one_byte_reads: u8,
    delay_ms: u8,
    resets: u8,
    hang_ups: u8,
    fault_window_ms: u16,
    tls: bool,
    /// The high watermark, in KiB above 1.
    watermark_kib: u8,
    /// 0: finish (half-close), 1: close, 2: abort, else: nothing (the server's idle timeout).
    end: u8,
    lines: Vec<Vec<u8>>,
}

/// Records what arrives; the server also echoes it.
#[derive(Default)]
struct Peer {
    echo: bool,
    got: Vec<Bytes>,
}

impl Application for Peer {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        self.got.push(frame.clone());
        if self.echo {
            // A full queue just means fewer echoes.
            let _ = t.send_frame(frame);
        }
        Ok(())
    }
}

fuzz_target!(|input: Input| {
    let (seeded, server_tls, client_tls) = tendril_core_fuzz::tls_setup();
    seeded.rewind();
    let percent = |p: u8| p % 101;
    let mut faults = Faults::perfect();
    faults.short_writes = percent(input.short_writes);
    faults.one_byte_reads = percent(input.one_byte_reads);
    faults.max_delay = Duration::from_millis(u64::from(input.delay_ms % 20));
    faults.resets = percent(input.resets);
    faults.hang_ups = percent(input.hang_ups);
    faults.fault_window = Duration::from_millis(u64::from(input.fault_window_ms));
    let mut net = Net::new(input.seed, faults);

    let mut config = Config::default();
    config.high_watermark = 1024 * (1 + usize::from(input.watermark_kib));
    config.low_watermark = config.high_watermark / 4;
    config.idle_timeout = Some(Duration::from_secs(60));
    let tendril = move |layer: Option<TlsLayer>| {
        let mut t = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf()).with_config(config);
        if let Some(layer) = layer {
            t.wrap(layer);
        }
        t
    };
    let use_tls = input.tls;
    let server_tls = server_tls.clone();
    let addr: SocketAddr = "10.0.0.1:7".parse().unwrap();
    let listener = net.listen(
        addr,
        move || tendril(use_tls.then(|| TlsLayer::server(server_tls.clone()).unwrap())),
        |_| {
            Ok(Peer {
                echo: true,
                got: Vec::new(),
            })
        },
    );
    let client_layer =
        use_tls.then(|| TlsLayer::client(client_tls.clone(), tls::server_name()).unwrap());
    let mut client = tendril(client_layer);
    let mut sent = Vec::new();
    for line in input.lines.iter().take(MAX_LINES) {
        let line: Vec<u8> = line
            .iter()
            .take(MAX_LINE)
            .copied()
            .filter(|&b| b != b'\n' && b != b'\r')
            .collect();
        let line = Bytes::from(line);
        if client.send_frame(line.clone()).is_ok() {
            sent.push(line);
        }
    }
    match input.end {
        0 => client.finish(),
        1 => client.close(),
        2 => client.abort(),
        _ => {}
    }
    let link = net.connect(&listener, client, Peer::default());
    let server = link.server.expect("the acceptor takes every connection");
    net.run();

    let disrupted = net.disrupted(link.client) || input.end == 2;
    let got = &net.get(server).1.got;
    let echoes = &net.get(link.client).1.got;
    let same = |got: &[Bytes], want: &[Bytes], i: usize| {
        got[i] == want[i] || disrupted && i + 1 == got.len() && want[i].starts_with(&got[i])
    };
    assert!(got.len() <= sent.len());
    assert!(
        (0..got.len()).all(|i| same(got, &sent, i)),
        "the server got other lines"
    );
    assert!(echoes.len() <= got.len());
    assert!(
        (0..echoes.len()).all(|i| same(echoes, got, i)),
        "other echoes"
    );
    if !disrupted {
        assert_eq!(got.len(), sent.len(), "lines lost without a fault");
        if input.end == 0 {
            assert_eq!(echoes.len(), sent.len(), "echoes lost after a half-close");
        }
    }
    for end in [net.close_reason(link.client), net.close_reason(server)] {
        let reason = end.expect("an end still open when the network went quiet");
        assert!(
            !reason.contains("in time"),
            "a close had to time out: {reason}"
        );
    }
});
