//! The driver-agnostic suite (`tendril-driver-suite`), run on io_uring.

use futures::executor::block_on;
use std::io;
use std::time::Duration;
use tendril_core::{Addr, Tendril};
use tendril_driver_suite::{Settings, Silent};
use tendril_net::runtime::{Manager, TendrilHandle};
use tendril_net::{lock, SharedAcceptor, WrapperChain};
use tendril_uring::{get_manager, get_sharded_manager};

/// Every manager on the process's io_uring shard; the test thread waits with `block_on`.
#[derive(Default)]
struct Uring;

impl tendril_driver_suite::Driver for Uring {
    fn start_with(
        &self,
        proto: &str,
        endpoint: &str,
        acceptor: SharedAcceptor,
        wrapper: WrapperChain,
        settings: Settings,
    ) -> io::Result<Box<dyn tendril_driver_suite::Server>> {
        let shards = settings.shards.unwrap_or(1);
        let manager = get_sharded_manager(proto, endpoint, shards)?;
        settings.apply(|c| manager.set_config(c), |u| manager.set_udp_config(u));
        block_on(manager.start(move |t| (lock(&acceptor))(t), wrapper))?;
        Ok(Box::new(Running(manager, shards)))
    }

    fn connect_within(&self, target: &str, timeout: Duration) -> io::Result<()> {
        let manager = get_manager("tcp", "")?;
        manager.set_connect_timeout(timeout);
        block_on(async {
            let silent = |_: &mut Tendril| Ok(Silent);
            let handle = manager.connect(target, silent, WrapperChain::new()).await?;
            handle.close();
            manager.stop().await;
            Ok(())
        })
    }
    fn connector(&self, proto: &str) -> io::Result<Box<dyn tendril_driver_suite::Server>> {
        Ok(Box::new(Running(get_manager(proto, "")?, 1)))
    }
}

/// A manager, and how many shards it runs.
struct Running(Manager, usize);

impl tendril_driver_suite::Server for Running {
    fn local_addr(&self) -> Addr {
        self.0.local_addr().unwrap_or(Addr::Unnamed)
    }

    fn shards(&self) -> usize {
        self.1
    }

    fn tendril_count(&self) -> usize {
        self.0.tendrils().len()
    }

    fn stop(self: Box<Self>) {
        block_on(self.0.stop());
    }

    fn stop_then_try_again(self: Box<Self>, target: &str) -> [io::Result<()>; 2] {
        block_on(async {
            self.0.stop().await;
            let silent = |_: &mut Tendril| Ok(Silent);
            let start = self.0.start(silent, WrapperChain::new()).await;
            let connect = self.0.connect(target, silent, WrapperChain::new()).await;
            [start, connect.map(drop)]
        })
    }
    fn connect(&self, target: &str, acceptor: SharedAcceptor) -> io::Result<TendrilHandle> {
        let app = move |t: &mut Tendril| (lock(&acceptor))(t);
        block_on(self.0.connect(target, app, WrapperChain::new()))
    }

    fn finds(&self, local: &Addr, remote: &Addr) -> bool {
        self.0.find(local, remote).is_some()
    }
}

tendril_driver_suite::driver_suite!(Uring);
