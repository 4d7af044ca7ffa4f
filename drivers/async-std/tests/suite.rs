//! The driver-agnostic suite (`tendril-driver-suite`), run on this driver twice: tasks on
//! async-std's executor, and tasks on smol's.

use std::future::Future;
use std::io;
use tendril_async_std::{get_manager, Manager, Spawner};
use tendril_driver_suite::Glue;

/// Managers whose tasks async-std's executor runs; the test thread waits with its `block_on`.
#[derive(Default)]
struct AsyncStd;

impl Glue for AsyncStd {
    type Context = ();

    fn manager(&self, proto: &str, endpoint: &str, _: Option<usize>) -> io::Result<(Manager, ())> {
        let manager = get_manager(proto, endpoint)?;
        manager.set_spawner(Spawner::new(|task| {
            async_std::task::spawn(task);
        }));
        Ok((manager, ()))
    }

    fn block_on<F: Future>(_: &(), future: F) -> F::Output {
        async_std::task::block_on(future)
    }
}

/// Managers whose tasks smol's executor runs; the test thread waits with its `block_on`.
#[derive(Default)]
struct Smol;

impl Glue for Smol {
    type Context = ();

    fn manager(&self, proto: &str, endpoint: &str, _: Option<usize>) -> io::Result<(Manager, ())> {
        let manager = get_manager(proto, endpoint)?;
        manager.set_spawner(Spawner::new(|task| smol::spawn(task).detach()));
        Ok((manager, ()))
    }

    fn block_on<F: Future>(_: &(), future: F) -> F::Output {
        smol::block_on(future)
    }
}

mod on_async_std {
    type AsyncStdDriver = tendril_driver_suite::Glued<super::AsyncStd>;

    tendril_driver_suite::driver_suite!(AsyncStdDriver);
}

mod on_smol {
    type SmolDriver = tendril_driver_suite::Glued<super::Smol>;

    tendril_driver_suite::driver_suite!(SmolDriver);
}
