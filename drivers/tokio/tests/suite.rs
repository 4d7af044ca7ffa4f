//! The driver-agnostic suite (`tendril-driver-suite`), run on the Tokio driver.

use std::io;
use std::time::Duration;
use tendril_core::Addr;
use tendril_core::Tendril;
use tendril_driver_suite::{Settings, Silent};
use tendril_net::{lock, SharedAcceptor, WrapperChain};
use tendril_tokio::{get_manager, get_sharded_manager, Manager, TendrilHandle};

/// Each manager gets its own multi-threaded runtime, kept until it stops: the manager's tasks
/// run on it, or on a sharded manager's own shard threads (the runtime then only waits).
/// `Driver<0>` shards when a scenario asks ([`Settings::shards`]); `Driver<N>` runs N shards
/// unless a scenario asks for another number.
#[derive(Default)]
struct Driver<const SHARDS: usize>;

/// Tokio as the caller's runtime, sharded when a scenario asks.
type Tokio = Driver<0>;

impl<const SHARDS: usize> Driver<SHARDS> {
    fn manager(proto: &str, endpoint: &str, shards: Option<usize>) -> io::Result<Manager> {
        match shards.or((SHARDS > 0).then_some(SHARDS)) {
            Some(shards) => get_sharded_manager(proto, endpoint, shards),
            None => get_manager(proto, endpoint),
        }
    }
}

fn multi_thread() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

struct Running {
    runtime: tokio::runtime::Runtime,
    manager: Manager,
}

impl<const SHARDS: usize> tendril_driver_suite::Driver for Driver<SHARDS> {
    fn start_with(
        &self,
        proto: &str,
        endpoint: &str,
        acceptor: SharedAcceptor,
        wrapper: WrapperChain,
        settings: Settings,
    ) -> io::Result<Box<dyn tendril_driver_suite::Server>> {
        let runtime = multi_thread()?;
        let manager = Self::manager(proto, endpoint, settings.shards)?;
        settings.apply(|c| manager.set_config(c), |u| manager.set_udp_config(u));
        runtime.block_on(manager.start(move |t| (lock(&acceptor))(t), wrapper))?;
        Ok(Box::new(Running { runtime, manager }))
    }

    fn connect_within(&self, target: &str, timeout: Duration) -> io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let manager = Self::manager("tcp", "", None)?;
        manager.set_connect_timeout(timeout);
        runtime.block_on(async {
            let silent = |_: &mut Tendril| Ok(Silent);
            let handle = manager.connect(target, silent, WrapperChain::new()).await?;
            handle.close();
            manager.stop().await;
            Ok(())
        })
    }
    fn connector(&self, proto: &str) -> io::Result<Box<dyn tendril_driver_suite::Server>> {
        let runtime = multi_thread()?;
        let manager = Self::manager(proto, "", None)?;
        Ok(Box::new(Running { runtime, manager }))
    }
}

impl tendril_driver_suite::Server for Running {
    fn local_addr(&self) -> Addr {
        self.manager.local_addr().unwrap_or(Addr::Unnamed)
    }

    fn tendril_count(&self) -> usize {
        self.manager.tendrils().len()
    }

    fn stop(self: Box<Self>) {
        self.runtime.block_on(self.manager.stop());
    }

    fn stop_then_try_again(self: Box<Self>, target: &str) -> [io::Result<()>; 2] {
        let manager = &self.manager;
        self.runtime.block_on(async {
            manager.stop().await;
            let silent = |_: &mut Tendril| Ok(Silent);
            let start = manager.start(silent, WrapperChain::new()).await;
            let connect = manager.connect(target, silent, WrapperChain::new()).await;
            [start, connect.map(drop)]
        })
    }
    fn connect(&self, target: &str, acceptor: SharedAcceptor) -> io::Result<TendrilHandle> {
        let app = move |t: &mut Tendril| (lock(&acceptor))(t);
        self.runtime
            .block_on(self.manager.connect(target, app, WrapperChain::new()))
    }

    fn finds(&self, local: &Addr, remote: &Addr) -> bool {
        self.manager.find(local, remote).is_some()
    }

    fn shards(&self) -> usize {
        self.manager.shards()
    }
}

tendril_driver_suite::driver_suite!(Tokio);

/// The whole suite again on two shards: every behaviour it specifies holds on shards too.
mod sharded {
    /// Two `tendril_tokio::Sharded` shards for every manager.
    type Sharded = super::Driver<2>;

    tendril_driver_suite::driver_suite!(Sharded);
}
