//! Transports and the protocol registry behind `get_manager`: the extension point for new
//! kinds of socket.

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, OnceLock, RwLock};
use tendril_core::{Addr, Proto};

use super::{Shared, TendrilHandle};
use crate::{SharedAcceptor, WrapperChain};

/// A transport a manager can run: it binds and accepts, and connects out. TCP, UDP and Unix
/// sockets are transports registered at start-up; register your own with [`register`]. Stream
/// transports hand each connected socket to [`spawn_stream`](super::spawn_stream), so
/// everything above the socket is shared. A transport is written once for every async runtime:
/// it reaches the runtime through [`Shared::runtime`].
///
/// ```
/// use futures::future::BoxFuture;
/// use std::io;
/// use std::sync::Arc;
/// use tendril_core::{Addr, Proto};
/// use tendril_net::runtime::{Shared, TendrilHandle, Transport};
/// use tendril_net::{SharedAcceptor, WrapperChain};
///
/// /// Refuses everything: the smallest transport there is.
/// struct Nowhere;
///
/// impl Transport for Nowhere {
///     fn proto(&self) -> Proto {
///         Proto::stream("nowhere")
///     }
///
///     fn listen(
///         &self,
///         _shared: Arc<Shared>,
///         _endpoint: String,
///         _wrapper: WrapperChain,
///         _acceptor: SharedAcceptor,
///     ) -> BoxFuture<'static, io::Result<Addr>> {
///         Box::pin(async { Err(io::Error::other("nowhere to listen")) })
///     }
///
///     fn connect(
///         &self,
///         _shared: Arc<Shared>,
///         _local: String,
///         _target: String,
///         _wrapper: WrapperChain,
///         _acceptor: SharedAcceptor,
///     ) -> BoxFuture<'static, io::Result<TendrilHandle>> {
///         Box::pin(async { Err(io::Error::other("nowhere to go")) })
///     }
/// }
///
/// tendril_net::runtime::register("nowhere", Arc::new(Nowhere));
/// assert!(tendril_net::runtime::protocols().contains(&"nowhere".to_string()));
/// ```
pub trait Transport: Send + Sync + 'static {
    /// The protocol this transport carries.
    fn proto(&self) -> Proto;

    /// Bind `endpoint` (running `wrapper` on the listening socket first), accept in tasks
    /// spawned with [`Shared::spawn`] until [`Shared::cancelled`] fires, and return the bound
    /// address.
    fn listen(
        &self,
        shared: Arc<Shared>,
        endpoint: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> BoxFuture<'static, io::Result<Addr>>;

    /// Connect from `local` (the manager's endpoint, possibly empty) to `target`.
    fn connect(
        &self,
        shared: Arc<Shared>,
        local: String,
        target: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> BoxFuture<'static, io::Result<TendrilHandle>>;
}

type Registry = RwLock<HashMap<String, Arc<dyn Transport>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut map: HashMap<String, Arc<dyn Transport>> = HashMap::new();
        map.insert("tcp".into(), Arc::new(super::stream_transports::Tcp));
        map.insert("udp".into(), Arc::new(super::udp::Udp));
        map.insert("unix".into(), Arc::new(super::stream_transports::Unix));
        RwLock::new(map)
    })
}

/// Register a transport under `name` for every async driver's `get_manager`; replaces any
/// transport of that name.
pub fn register(name: &str, transport: Arc<dyn Transport>) {
    registry()
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_owned(), transport);
}

/// The names of the registered protocols.
pub fn protocols() -> Vec<String> {
    let mut names: Vec<String> = registry()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

pub(crate) fn lookup(name: &str) -> io::Result<Arc<dyn Transport>> {
    registry()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
        .cloned()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("no transport registered for protocol {name:?}"),
            )
        })
}
