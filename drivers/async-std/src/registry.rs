//! The protocol registry behind [`get_manager`](crate::get_manager): the extension point for new
//! transports.

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, OnceLock, RwLock};
use tendril_core::{Addr, Proto};
use tendril_net::WrapperChain;

use crate::manager::{Context, SharedAcceptor};
use crate::TendrilHandle;

/// A transport a manager can run: it binds and accepts, and connects out. TCP, UDP and Unix
/// sockets are transports registered at start-up; register your own with
/// [`register`](crate::register). Stream transports hand each connected socket to
/// [`spawn_stream`](crate::spawn_stream), so everything above the socket is shared.
///
/// The Unix transport of this crate is built on nothing but this public API; so is the one in
/// the example below, a listen-only TCP under another name.
///
/// ```no_run
/// use futures::future::BoxFuture;
/// use std::io;
/// use std::sync::Arc;
/// use tendril_async_std::{spawn_stream, Context, SharedAcceptor, SocketStream, TendrilHandle, Transport};
/// use tendril_core::{Addr, Proto};
/// use tendril_net::WrapperChain;
///
/// struct PlainTcp;
///
/// impl Transport for PlainTcp {
///     fn proto(&self) -> Proto {
///         Proto::stream("plain-tcp")
///     }
///
///     fn listen(
///         &self,
///         ctx: Arc<Context>,
///         endpoint: String,
///         _wrapper: WrapperChain,
///         acceptor: SharedAcceptor,
///     ) -> BoxFuture<'static, io::Result<Addr>> {
///         Box::pin(async move {
///             let listener = async_io::Async::<std::net::TcpListener>::bind(
///                 endpoint.parse::<std::net::SocketAddr>().map_err(io::Error::other)?,
///             )?;
///             let local = listener.get_ref().local_addr()?;
///             let task_ctx = ctx.clone();
///             let cancel = ctx.cancelled();
///             ctx.spawn(async move {
///                 while let Some(Ok((stream, remote))) = cancel
///                     .run_until_cancelled(listener.read_with(|l| l.accept()))
///                     .await
///                 {
///                     if let Ok(stream) = SocketStream::new(stream) {
///                         let _ = spawn_stream(&task_ctx, stream, local.into(), remote.into(), &acceptor);
///                     }
///                 }
///             });
///             Ok(local.into())
///         })
///     }
///
///     fn connect(
///         &self,
///         _ctx: Arc<Context>,
///         _local: String,
///         _target: String,
///         _wrapper: WrapperChain,
///         _acceptor: SharedAcceptor,
///     ) -> BoxFuture<'static, io::Result<TendrilHandle>> {
///         Box::pin(async { Err(io::Error::other("listen only")) })
///     }
/// }
///
/// tendril_async_std::register("plain-tcp", Arc::new(PlainTcp));
/// assert!(tendril_async_std::protocols().contains(&"plain-tcp".to_string()));
/// ```
pub trait Transport: Send + Sync + 'static {
    /// The protocol this transport carries.
    fn proto(&self) -> Proto;

    /// Bind `endpoint` (running `wrapper` on the listening socket first), accept in tasks
    /// spawned with [`Context::spawn`] until [`Context::cancelled`] fires, and return the bound
    /// address.
    fn listen(
        &self,
        ctx: Arc<Context>,
        endpoint: String,
        wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> BoxFuture<'static, io::Result<Addr>>;

    /// Connect from `local` (the manager's endpoint, possibly empty) to `target`.
    fn connect(
        &self,
        ctx: Arc<Context>,
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
