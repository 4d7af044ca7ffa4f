//! The driver-agnostic suite (`tendril-driver-suite`), run on io_uring: once on the shards a
//! scenario asks for (one unless it asks), and once more with two shards for every manager.
//! Where io_uring is unavailable each test prints `skipped:` and the cause.

use std::future::Future;
use std::io;
use tendril_driver_suite::{Glue, Glued};
use tendril_net::runtime::Manager;

/// Managers on the process's io_uring shard threads, `SHARDS` of them unless a scenario asks
/// for another number; the test thread waits with `block_on`.
#[derive(Default)]
struct Uring<const SHARDS: usize>;

impl<const SHARDS: usize> Glue for Uring<SHARDS> {
    type Context = ();

    fn manager(
        &self,
        proto: &str,
        endpoint: &str,
        shards: Option<usize>,
    ) -> io::Result<(Manager, ())> {
        let shards = shards.unwrap_or(SHARDS);
        Ok((
            tendril_uring::get_sharded_manager(proto, endpoint, shards)?,
            (),
        ))
    }

    fn block_on<F: Future>(_: &(), future: F) -> F::Output {
        futures::executor::block_on(future)
    }
}

type UringDriver = Glued<Uring<1>>;

tendril_driver_suite::driver_suite!(UringDriver, skip_unless = tendril_uring::available);

/// The whole suite again on two shards.
mod sharded {
    type UringSharded = tendril_driver_suite::Glued<super::Uring<2>>;

    tendril_driver_suite::driver_suite!(UringSharded, skip_unless = tendril_uring::available);
}
