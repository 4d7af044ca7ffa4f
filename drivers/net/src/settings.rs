//! A manager's settings for what it makes — each tendril's configuration, and the peer table of
//! each UDP socket — decided once for every driver.

use std::sync::Mutex;
use tendril_core::tracker::TrackerConfig;
use tendril_core::Config;

use crate::lock;

/// What a manager's `set_config` and `set_udp_config` set, read each time a tendril is made or
/// a UDP socket is bound.
///
/// ```
/// use std::time::Duration;
/// use tendril_core::Config;
/// use tendril_net::ManagerSettings;
///
/// let settings = ManagerSettings::default();
/// let mut config = Config::default();
/// config.idle_timeout = Some(Duration::from_secs(5));
/// settings.set_config(config);
/// assert_eq!(settings.config(), config);
/// assert_eq!(settings.tracker_config().idle_timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Default)]
pub struct ManagerSettings {
    config: Mutex<Config>,
    /// `None` until `set_udp_config`: the peer table's settings then follow `config`.
    udp: Mutex<Option<TrackerConfig>>,
}

impl ManagerSettings {
    /// The configuration of new tendrils.
    pub fn config(&self) -> Config {
        *lock(&self.config)
    }

    /// Set the configuration of new tendrils: stream connections and UDP peers.
    pub fn set_config(&self, config: Config) {
        *lock(&self.config) = config;
    }

    /// Set the peer-table settings of UDP sockets bound from now on.
    pub fn set_udp_config(&self, udp: TrackerConfig) {
        *lock(&self.udp) = Some(udp);
    }

    /// The settings of a UDP socket bound now ([`tracker_config`]).
    pub fn tracker_config(&self) -> TrackerConfig {
        tracker_config(self.config(), *lock(&self.udp))
    }
}

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
    let mut settings = udp.unwrap_or_else(|| {
        let mut defaults = TrackerConfig::default();
        if let Some(idle) = connection.idle_timeout {
            defaults.idle_timeout = idle;
        }
        defaults
    });
    settings.connection = connection;
    settings
}
