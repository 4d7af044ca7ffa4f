//! The settings a manager's UDP sockets run their trackers with, decided once for every driver.

use tendril_core::tracker::TrackerConfig;
use tendril_core::Config;

/// The [`TrackerConfig`] of a manager's UDP socket.
///
/// - `connection` (the manager's `set_config`) is every peer's connection configuration, as it
///   is every stream connection's; the `connection` field of `udp` is replaced by it.
/// - `udp` (the manager's `set_udp_config`) holds the peer table's own settings: idle timeout,
///   maximum peers, how long and how many rejections are remembered.
/// - Without `udp`, the defaults apply, except that a peer idles out after `connection`'s
///   idle timeout when it has one.
///
/// ```
/// use std::time::Duration;
/// use tendril_core::tracker::TrackerConfig;
/// use tendril_core::Config;
///
/// let mut connection = Config::default();
/// connection.idle_timeout = Some(Duration::from_secs(5));
/// assert_eq!(tendril_net::tracker_config(connection, None).idle_timeout, Duration::from_secs(5));
///
/// let mut udp = TrackerConfig::default();
/// udp.max_peers = 10;
/// udp.idle_timeout = Duration::from_secs(30);
/// let settings = tendril_net::tracker_config(connection, Some(udp));
/// assert_eq!((settings.max_peers, settings.idle_timeout), (10, Duration::from_secs(30)));
/// assert_eq!(settings.connection, connection);
/// ```
pub fn tracker_config(connection: Config, udp: Option<TrackerConfig>) -> TrackerConfig {
    let mut settings = udp.unwrap_or_default();
    if udp.is_none() {
        if let Some(idle) = connection.idle_timeout {
            settings.idle_timeout = idle;
        }
    }
    settings.connection = connection;
    settings
}
