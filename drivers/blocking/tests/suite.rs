//! The driver-agnostic suite (`tendril-driver-suite`), run on the blocking driver.

use std::io;
use std::time::Duration;
use tendril_blocking::{get_manager, Manager};
use tendril_core::Addr;
use tendril_core::Tendril;
use tendril_driver_suite::{Settings, Silent};
use tendril_net::runtime::TendrilHandle;
use tendril_net::{lock, SharedAcceptor, WrapperChain};

/// Plain threads: nothing to set up.
#[derive(Default)]
struct Blocking;

impl tendril_driver_suite::Driver for Blocking {
    fn start_with(
        &self,
        proto: &str,
        endpoint: &str,
        acceptor: SharedAcceptor,
        wrapper: WrapperChain,
        settings: Settings,
    ) -> io::Result<Box<dyn tendril_driver_suite::Server>> {
        let manager = get_manager(proto, endpoint)?;
        settings.apply(|c| manager.set_config(c), |u| manager.set_udp_config(u));
        manager.start(move |t| (lock(&acceptor))(t), wrapper)?;
        Ok(Box::new(Running(manager)))
    }

    fn connect_within(&self, target: &str, timeout: Duration) -> io::Result<()> {
        let manager = get_manager("tcp", "")?;
        manager.set_connect_timeout(timeout);
        let handle = manager.connect(target, |_: &mut Tendril| Ok(Silent), WrapperChain::new())?;
        handle.close();
        manager.stop();
        Ok(())
    }
    fn connector(&self, proto: &str) -> io::Result<Box<dyn tendril_driver_suite::Server>> {
        Ok(Box::new(Running(get_manager(proto, "")?)))
    }
}

/// A started manager.
struct Running(Manager);

impl tendril_driver_suite::Server for Running {
    fn local_addr(&self) -> Addr {
        self.0.local_addr().unwrap_or(Addr::Unnamed)
    }

    fn tendril_count(&self) -> usize {
        self.0.tendrils().len()
    }

    fn stop(self: Box<Self>) {
        self.0.stop();
    }

    fn stop_then_try_again(self: Box<Self>, target: &str) -> [io::Result<()>; 2] {
        self.0.stop();
        let silent = |_: &mut Tendril| Ok(Silent);
        let start = self.0.start(silent, WrapperChain::new());
        let connect = self.0.connect(target, silent, WrapperChain::new());
        [start, connect.map(drop)]
    }
    fn connect(&self, target: &str, acceptor: SharedAcceptor) -> io::Result<TendrilHandle> {
        let app = move |t: &mut Tendril| (lock(&acceptor))(t);
        let handle = self.0.connect(target, app, WrapperChain::new())?;
        Ok((*handle).clone())
    }

    fn finds(&self, local: &Addr, remote: &Addr) -> bool {
        self.0.find(local, remote).is_some()
    }
}

tendril_driver_suite::driver_suite!(Blocking);
