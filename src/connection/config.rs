use core::time::Duration;

/// Per-connection settings, with documented defaults.
///
/// ```
/// use core::time::Duration;
/// use tendril_core::Config;
///
/// let mut config = Config::default();
/// config.idle_timeout = Some(Duration::from_secs(30));
/// assert_eq!(config.high_watermark, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Spare capacity reserved in the receive buffer before each read. Default 8 KiB.
    pub read_size: usize,
    /// Above this many queued outgoing bytes `send_frame` refuses frames and frame delivery
    /// pauses, so a peer that does not read stops being read. Default 1 MiB.
    pub high_watermark: usize,
    /// At or below this many queued bytes a paused connection gets [`Event::Writable`](crate::Event::Writable).
    /// Default 256 KiB. A value at or above `high_watermark` acts as `high_watermark - 1`.
    pub low_watermark: usize,
    /// Close a connection that received nothing for this long. Default: none for streams (the
    /// UDP tracker sets its own).
    pub idle_timeout: Option<Duration>,
    /// Close a connection whose frame, once begun, is not complete after this long (a peer
    /// trickling bytes to hold the connection: slowloris). Default: none.
    pub frame_timeout: Option<Duration>,
    /// How long a layer (e.g. TLS) may take to finish its handshake, counted from when it was
    /// wrapped; a peer that stalls or hangs up mid-handshake is then closed with
    /// [`CloseReason::HandshakeTimeout`](crate::CloseReason::HandshakeTimeout). Default 10 s:
    /// a TLS handshake is two round trips, so this leaves room for a slow link with several
    /// retransmissions, while a connect-and-stall loop cannot hold sockets for long.
    pub handshake_timeout: Option<Duration>,
    /// How long a graceful close may wait for the peer to take the queued bytes before the
    /// connection is aborted. Default 30 s.
    pub linger: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            read_size: 8 * 1024,
            high_watermark: 1 << 20,
            low_watermark: 256 * 1024,
            idle_timeout: None,
            frame_timeout: None,
            handshake_timeout: Some(Duration::from_secs(10)),
            linger: Some(Duration::from_secs(30)),
        }
    }
}
