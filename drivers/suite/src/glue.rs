//! [`Glue`]: the [`Driver`] and [`Server`] of a driver whose managers are the kit's async
//! [`Manager`], written once. A driver's test file says only how it makes a manager and how the
//! test thread waits on a future.

use crate::{Driver, Server, Settings, Silent};
use std::future::Future;
use std::io;
use std::time::Duration;
use tendril_core::{Addr, Tendril};
use tendril_net::runtime::{Manager, TendrilHandle};
use tendril_net::{lock, SharedAcceptor, WrapperChain};

/// How a driver makes the kit's managers and how the test thread waits on them.
///
/// [`Glued`] turns it into a [`Driver`]:
///
/// ```
/// use std::future::Future;
/// use tendril_driver_suite::{Glue, Glued};
/// use tendril_net::runtime::Manager;
///
/// /// Every manager on the process's one mio loop; the test thread waits with `block_on`.
/// #[derive(Default)]
/// struct Mio;
///
/// impl Glue for Mio {
///     type Context = ();
///     fn manager(&self, proto: &str, endpoint: &str, _shards: Option<usize>)
///         -> std::io::Result<(Manager, ())>
///     {
///         Ok((tendril_mio::get_manager(proto, endpoint)?, ()))
///     }
///     fn block_on<F: Future>(_: &(), future: F) -> F::Output {
///         futures::executor::block_on(future)
///     }
/// }
///
/// type MioDriver = Glued<Mio>;
/// // In a test file: tendril_driver_suite::driver_suite!(MioDriver);
/// # let _ = MioDriver::default();
/// ```
pub trait Glue: Default {
    /// What runs a manager's tasks while it lives (a Tokio runtime, an executor's name, or
    /// nothing when the driver has threads of its own).
    type Context;

    /// A manager for `proto` on `endpoint`, on `shards` shards when a scenario asks for them
    /// and the driver can shard (otherwise `shards` is ignored), with its context.
    fn manager(
        &self,
        proto: &str,
        endpoint: &str,
        shards: Option<usize>,
    ) -> io::Result<(Manager, Self::Context)>;

    /// Wait on the test thread for `future`, which may drive `cx`.
    fn block_on<F: Future>(cx: &Self::Context, future: F) -> F::Output;
}

/// The [`Driver`] of a [`Glue`].
#[derive(Debug, Default)]
pub struct Glued<G>(G);

impl<G: Glue + 'static> Driver for Glued<G> {
    fn start_with(
        &self,
        proto: &str,
        endpoint: &str,
        acceptor: SharedAcceptor,
        wrapper: WrapperChain,
        settings: Settings,
    ) -> io::Result<Box<dyn Server>> {
        let (manager, cx) = self.0.manager(proto, endpoint, settings.shards)?;
        settings.apply(|c| manager.set_config(c), |u| manager.set_udp_config(u));
        G::block_on(&cx, manager.start(move |t| (lock(&acceptor))(t), wrapper))?;
        Ok(Box::new(Running::<G> { manager, cx }))
    }

    fn connect_within(&self, target: &str, timeout: Duration) -> io::Result<()> {
        let (manager, cx) = self.0.manager("tcp", "", None)?;
        manager.set_connect_timeout(timeout);
        G::block_on(&cx, async {
            let handle = manager.connect(target, silent, WrapperChain::new()).await?;
            handle.close();
            manager.stop().await;
            Ok(())
        })
    }

    fn connector(&self, proto: &str) -> io::Result<Box<dyn Server>> {
        let (manager, cx) = self.0.manager(proto, "", None)?;
        Ok(Box::new(Running::<G> { manager, cx }))
    }
}

/// A [`Silent`] application for each tendril.
fn silent(_: &mut Tendril) -> Result<Silent, tendril_core::Reject> {
    Ok(Silent)
}

/// A manager and what runs it.
struct Running<G: Glue> {
    manager: Manager,
    cx: G::Context,
}

impl<G: Glue> Server for Running<G> {
    fn local_addr(&self) -> Addr {
        self.manager.local_addr().unwrap_or(Addr::Unnamed)
    }

    fn tendril_count(&self) -> usize {
        self.manager.tendrils().len()
    }

    fn stop(self: Box<Self>) {
        G::block_on(&self.cx, self.manager.stop());
    }

    fn stop_then_try_again(self: Box<Self>, target: &str) -> [io::Result<()>; 2] {
        let manager = &self.manager;
        G::block_on(&self.cx, async {
            manager.stop().await;
            let start = manager.start(silent, WrapperChain::new()).await;
            let connect = manager.connect(target, silent, WrapperChain::new()).await;
            [start, connect.map(drop)]
        })
    }

    fn connect(&self, target: &str, acceptor: SharedAcceptor) -> io::Result<TendrilHandle> {
        let app = move |t: &mut Tendril| (lock(&acceptor))(t);
        G::block_on(
            &self.cx,
            self.manager.connect(target, app, WrapperChain::new()),
        )
    }

    fn finds(&self, local: &Addr, remote: &Addr) -> bool {
        self.manager.find(local, remote).is_some()
    }

    fn shards(&self) -> usize {
        self.manager.shards()
    }
}
