//! The driver-agnostic suite (`tendril-driver-suite`), run on this driver twice: tasks on
//! async-std's executor, and tasks on smol's.

use std::io;
use std::time::Duration;
use tendril_async_std::{get_manager, Manager, Spawner, TendrilHandle};
use tendril_core::Addr;
use tendril_core::Tendril;
use tendril_driver_suite::{Settings, Silent};
use tendril_net::{lock, SharedAcceptor, WrapperChain};

/// Which executor runs the manager's tasks.
#[derive(Clone, Copy)]
enum Executor {
    AsyncStd,
    Smol,
}

struct Running {
    manager: Manager,
    executor: Executor,
}

fn block_on<T>(executor: Executor, f: impl std::future::Future<Output = T>) -> T {
    match executor {
        Executor::AsyncStd => async_std::task::block_on(f),
        Executor::Smol => smol::block_on(f),
    }
}

fn start(
    executor: Executor,
    proto: &str,
    endpoint: &str,
    acceptor: SharedAcceptor,
    wrapper: WrapperChain,
    settings: Settings,
) -> io::Result<Box<dyn tendril_driver_suite::Server>> {
    let manager = get_manager(proto, endpoint)?;
    settings.apply(|c| manager.set_config(c), |u| manager.set_udp_config(u));
    manager.set_spawner(match executor {
        Executor::AsyncStd => Spawner::new(|task| {
            async_std::task::spawn(task);
        }),
        Executor::Smol => Spawner::new(|task| smol::spawn(task).detach()),
    });
    block_on(
        executor,
        manager.start(move |t| (lock(&acceptor))(t), wrapper),
    )?;
    Ok(Box::new(Running { manager, executor }))
}

fn connector(executor: Executor, proto: &str) -> io::Result<Box<dyn tendril_driver_suite::Server>> {
    let manager = get_manager(proto, "")?;
    Ok(Box::new(Running { manager, executor }))
}

fn connect_within(executor: Executor, target: &str, timeout: Duration) -> io::Result<()> {
    let manager = get_manager("tcp", "")?;
    manager.set_connect_timeout(timeout);
    block_on(executor, async {
        let silent = |_: &mut Tendril| Ok(Silent);
        let handle = manager.connect(target, silent, WrapperChain::new()).await?;
        handle.close();
        manager.stop().await;
        Ok(())
    })
}

impl tendril_driver_suite::Server for Running {
    fn local_addr(&self) -> Addr {
        self.manager.local_addr().unwrap_or(Addr::Unnamed)
    }

    fn tendril_count(&self) -> usize {
        self.manager.tendrils().len()
    }

    fn stop(self: Box<Self>) {
        block_on(self.executor, self.manager.stop());
    }

    fn stop_then_try_again(self: Box<Self>, target: &str) -> [io::Result<()>; 2] {
        let manager = &self.manager;
        block_on(self.executor, async {
            manager.stop().await;
            let silent = |_: &mut Tendril| Ok(Silent);
            let start = manager.start(silent, WrapperChain::new()).await;
            let connect = manager.connect(target, silent, WrapperChain::new()).await;
            [start, connect.map(drop)]
        })
    }
    fn connect(&self, target: &str, acceptor: SharedAcceptor) -> io::Result<TendrilHandle> {
        let app = move |t: &mut Tendril| (lock(&acceptor))(t);
        block_on(
            self.executor,
            self.manager.connect(target, app, WrapperChain::new()),
        )
    }

    fn finds(&self, local: &Addr, remote: &Addr) -> bool {
        self.manager.find(local, remote).is_some()
    }
}

mod on_async_std {
    use super::*;

    #[derive(Default)]
    pub struct AsyncStd;

    impl tendril_driver_suite::Driver for AsyncStd {
        fn start_with(
            &self,
            proto: &str,
            endpoint: &str,
            acceptor: SharedAcceptor,
            wrapper: WrapperChain,
            settings: Settings,
        ) -> io::Result<Box<dyn tendril_driver_suite::Server>> {
            start(
                Executor::AsyncStd,
                proto,
                endpoint,
                acceptor,
                wrapper,
                settings,
            )
        }

        fn connect_within(&self, target: &str, timeout: Duration) -> io::Result<()> {
            connect_within(Executor::AsyncStd, target, timeout)
        }

        fn connector(&self, proto: &str) -> io::Result<Box<dyn tendril_driver_suite::Server>> {
            connector(Executor::AsyncStd, proto)
        }
    }

    tendril_driver_suite::driver_suite!(AsyncStd);
}

mod on_smol {
    use super::*;

    #[derive(Default)]
    pub struct Smol;

    impl tendril_driver_suite::Driver for Smol {
        fn start_with(
            &self,
            proto: &str,
            endpoint: &str,
            acceptor: SharedAcceptor,
            wrapper: WrapperChain,
            settings: Settings,
        ) -> io::Result<Box<dyn tendril_driver_suite::Server>> {
            start(Executor::Smol, proto, endpoint, acceptor, wrapper, settings)
        }

        fn connect_within(&self, target: &str, timeout: Duration) -> io::Result<()> {
            connect_within(Executor::Smol, target, timeout)
        }

        fn connector(&self, proto: &str) -> io::Result<Box<dyn tendril_driver_suite::Server>> {
            connector(Executor::Smol, proto)
        }
    }

    tendril_driver_suite::driver_suite!(Smol);
}
