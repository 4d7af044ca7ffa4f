//! One listening socket per shard: a group of `SO_REUSEPORT` sockets on one address, and each
//! socket's task spawned on its shard and registered from there.

use socket2::SockRef;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use tracing::Instrument;

use super::adapter::Runtime;
use super::Shared;
use crate::WrapperChain;

/// Sockets, each with the shard it is for (`None`: no shard in particular).
pub(crate) type PerShard<S> = Vec<(Option<usize>, S)>;

/// Bind one socket per shard on `addr` with `bind` (which runs `wrapper` before it binds): the
/// bound address, and each socket with the shard it is for.
///
/// One shard: one socket, made exactly as without shards, for no shard in particular (`None`).
/// More: each socket also gets `SO_REUSEPORT`, after `wrapper`, so that the kernel spreads
/// connections over them and keeps a UDP peer's 4-tuple on one of them. With port 0 the first
/// socket picks the port and the others bind that port.
pub(crate) fn bind_shards<S: AsFd>(
    addr: SocketAddr,
    shards: usize,
    wrapper: &WrapperChain,
    bind: impl Fn(SocketAddr, &WrapperChain) -> io::Result<S>,
) -> io::Result<(SocketAddr, PerShard<S>)> {
    let local_of = |socket: &S| -> io::Result<SocketAddr> {
        let local = SockRef::from(socket).local_addr()?;
        Ok(local.as_socket().unwrap_or(addr))
    };
    if shards <= 1 {
        let socket = bind(addr, wrapper)?;
        return Ok((local_of(&socket)?, vec![(None, socket)]));
    }
    let wrapper = wrapper.clone().chain(crate::options::reuse_port(true));
    let first = bind(addr, &wrapper)?;
    let local = local_of(&first)?;
    let mut sockets = vec![(Some(0), first)];
    for shard in 1..shards {
        sockets.push((Some(shard), bind(local, &wrapper)?));
    }
    Ok((local, sockets))
}

/// Spawn `run` as task `id` (inside `span`) with `socket` registered by `register`.
///
/// For no shard in particular, `socket` is registered here and a failure is the caller's, as
/// without shards. For shard `i`, the task runs on shard `i` and registers `socket` from that
/// shard's thread, so that the socket lands on that shard's reactor and whatever its task
/// registers and spawns (an accepted connection) stays there. A failure then ends the task with
/// a warning: the socket closes and leaves its group, and the kernel spreads over the others.
pub(crate) fn spawn_registered<S, R, F>(
    shared: &Arc<Shared>,
    id: u64,
    shard: Option<usize>,
    socket: S,
    register: fn(&dyn Runtime, S) -> io::Result<R>,
    span: tracing::Span,
    run: impl FnOnce(R) -> F + Send + 'static,
) -> io::Result<()>
where
    S: Send + 'static,
    R: Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let Some(shard) = shard else {
        let registered = register(shared.runtime(), socket)?;
        shared.spawn_as(id, run(registered).instrument(span));
        return Ok(());
    };
    let task = shared.clone();
    let on_shard = async move {
        match register(task.runtime(), socket) {
            Ok(registered) => run(registered).await,
            Err(e) => {
                tracing::warn!(shard, error = %e, "registering the socket on its shard failed")
            }
        }
    };
    shared.spawn_to(id, Some(shard), on_shard.instrument(span));
    Ok(())
}
