//! A manager's life — not started, running, stopped for good — with the same rules under every
//! driver.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a manager runs, and whether it was stopped.
///
/// The rules: `start` once (again only after a start that failed), `connect` any time before
/// `stop`, and neither after `stop` — a stopped manager stays stopped, so nothing it starts
/// outlives the `stop` that waited for its tasks. A connection registered after `stop` began is
/// closed at once by the driver ([`is_stopped`](Self::is_stopped)).
///
/// ```
/// use tendril_net::Lifecycle;
///
/// let life = Lifecycle::default();
/// life.begin_start("127.0.0.1:0").unwrap();
/// assert!(life.is_running());
/// assert!(life.begin_start("127.0.0.1:0").is_err()); // already running
/// life.stop();
/// assert!(!life.is_running() && life.is_stopped());
/// assert!(life.begin_start("127.0.0.1:0").is_err());
/// assert!(life.check_connect().is_err());
/// ```
#[derive(Debug, Default)]
pub struct Lifecycle {
    running: AtomicBool,
    stopped: AtomicBool,
}

impl Lifecycle {
    /// `start` is about to bind `endpoint`: refused without an endpoint, after `stop`, and while
    /// running. On success the manager counts as running; call
    /// [`start_failed`](Self::start_failed) if binding then fails.
    pub fn begin_start(&self, endpoint: &str) -> io::Result<()> {
        if endpoint.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this manager has no endpoint to listen on; make it with get_manager(proto, \"host:port\")",
            ));
        }
        self.refuse_if_stopped()?;
        if self.running.swap(true, Ordering::AcqRel) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the manager is already running",
            ));
        }
        Ok(())
    }

    /// The start begun with [`begin_start`](Self::begin_start) failed: not running.
    pub fn start_failed(&self) {
        self.running.store(false, Ordering::Release);
    }

    /// `connect` is about to connect: refused after `stop`.
    pub fn check_connect(&self) -> io::Result<()> {
        self.refuse_if_stopped()
    }

    fn refuse_if_stopped(&self) -> io::Result<()> {
        if self.is_stopped() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this manager was stopped; make a new one with get_manager",
            ));
        }
        Ok(())
    }

    /// `stop` begins: not running, and stopped for good.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.running.store(false, Ordering::Release);
    }

    /// `true` between a successful `start` and `stop`.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// `true` once `stop` began.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}
