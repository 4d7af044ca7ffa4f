//! The protocol registry behind [`get_manager`](crate::get_manager): the extension point for new
//! transports.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, OnceLock, RwLock};
use tendril_core::{Addr, Proto};
use tendril_net::WrapperChain;

use crate::manager::{Context, SharedAcceptor};
use crate::TendrilHandle;

/// A transport a manager can run: it binds and accepts, and connects out. TCP, UDP and Unix
/// sockets are transports registered at start-up; register your own with
/// [`register`](crate::register).
///
/// Stream transports hand each connected socket to [`spawn_stream`](crate::spawn_stream), so
/// everything above the socket is shared. A listening transport accepts on a thread started
/// with [`Context::spawn`], and registers a [`Context::on_stop`] hook that wakes that thread
/// (e.g. by shutting the listening socket down) so it sees [`Context::is_stopping`] and ends.
///
/// ```no_run
/// use std::io;
/// use std::sync::Arc;
/// use tendril_blocking::{Context, SharedAcceptor, TendrilHandle, Transport, WrapperChain};
/// use tendril_core::{Addr, Proto};
///
/// /// TCP under another name, connecting out only.
/// struct Tcp2;
///
/// impl Transport for Tcp2 {
///     fn proto(&self) -> Proto {
///         Proto::stream("tcp2")
///     }
///     fn listen(&self, _: Arc<Context>, _: String, _: WrapperChain, _: SharedAcceptor)
///         -> io::Result<Addr> {
///         Err(io::Error::new(io::ErrorKind::Unsupported, "connect only"))
///     }
///     fn connect(&self, ctx: Arc<Context>, _local: String, target: String,
///         _: WrapperChain, acceptor: SharedAcceptor) -> io::Result<TendrilHandle> {
///         let stream = std::net::TcpStream::connect(&target)?;
///         let (local, remote) = (stream.local_addr()?, stream.peer_addr()?);
///         tendril_blocking::spawn_stream(&ctx, stream, local.into(), remote.into(), &acceptor)
///     }
/// }
///
/// tendril_blocking::register("tcp2", Arc::new(Tcp2));
/// let manager = tendril_blocking::get_manager("tcp2", "").unwrap();
/// ```
pub trait Transport: Send + Sync + 'static {
    /// The protocol this transport carries.
    fn proto(&self) -> Proto;

    /// Bind `endpoint` (running `wrapper` on the listening socket first), accept on threads
    /// started with [`Context::spawn`] until [`Context::is_stopping`], and return the bound
    /// address.
    fn listen(
        &self,
        ctx: Arc<Context>,
        endpoint: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> io::Result<Addr>;

    /// Connect from `local` (the manager's endpoint, possibly empty) to `target`, blocking until
    /// connected.
    fn connect(
        &self,
        ctx: Arc<Context>,
        local: String,
        target: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> io::Result<TendrilHandle>;
}

type Registry = RwLock<HashMap<String, Arc<dyn Transport>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut map: HashMap<String, Arc<dyn Transport>> = HashMap::new();
        map.insert("tcp".into(), Arc::new(crate::stream::Tcp));
        map.insert("udp".into(), Arc::new(crate::udp::Udp));
        #[cfg(unix)]
        map.insert("unix".into(), Arc::new(crate::stream::Unix));
        RwLock::new(map)
    })
}

/// Register a transport under `name` for [`get_manager`](crate::get_manager); replaces any
/// transport of that name.
pub fn register(name: &str, transport: Arc<dyn Transport>) {
    registry()
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_owned(), transport);
}

/// The names of the registered protocols, sorted.
///
/// ```
/// let names = tendril_blocking::protocols();
/// assert!(names.contains(&"tcp".to_string()) && names.contains(&"udp".to_string()));
/// ```
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

pub(crate) fn lookup(name: &str) -> Option<Arc<dyn Transport>> {
    registry()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
        .cloned()
}
