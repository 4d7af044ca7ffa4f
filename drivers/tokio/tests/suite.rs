//! The driver-agnostic suite (`tendril-driver-suite`), run on the Tokio driver: plain, and
//! again with two shards for every manager.

use std::future::Future;
use std::io;
use tendril_driver_suite::{Glue, Glued};
use tendril_tokio::{get_manager, get_sharded_manager, Manager};

/// Each manager gets its own multi-threaded runtime, kept until it stops: the manager's tasks
/// run on it, or on a sharded manager's own shard threads (the runtime then only waits).
/// `Tokio<0>` shards when a scenario asks ([`tendril_driver_suite::Settings::shards`]);
/// `Tokio<N>` runs N shards unless a scenario asks for another number.
#[derive(Default)]
struct Tokio<const SHARDS: usize>;

impl<const SHARDS: usize> Glue for Tokio<SHARDS> {
    type Context = tokio::runtime::Runtime;

    fn manager(
        &self,
        proto: &str,
        endpoint: &str,
        shards: Option<usize>,
    ) -> io::Result<(Manager, tokio::runtime::Runtime)> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let manager = match shards.or((SHARDS > 0).then_some(SHARDS)) {
            Some(shards) => get_sharded_manager(proto, endpoint, shards)?,
            None => get_manager(proto, endpoint)?,
        };
        Ok((manager, runtime))
    }

    fn block_on<F: Future>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output {
        runtime.block_on(future)
    }
}

/// Tokio as the caller's runtime, sharded when a scenario asks.
type TokioDriver = Glued<Tokio<0>>;

tendril_driver_suite::driver_suite!(TokioDriver);

/// The whole suite again on two shards: every behaviour it specifies holds on shards too.
mod sharded {
    /// Two `tendril_tokio::Sharded` shards for every manager.
    type Sharded = tendril_driver_suite::Glued<super::Tokio<2>>;

    tendril_driver_suite::driver_suite!(Sharded);
}
