//! What a manager keeps of the user's code: boxed applications, the acceptor that makes them,
//! and the factory of each new tendril's framers.

use std::sync::{Arc, Mutex, MutexGuard};
use tendril_core::{Application, BoxFramer, Framer, Identity, Reject, Tendril};

use crate::Isolated;

/// A boxed application, as managers keep them.
pub type BoxApp = Box<dyn Application + Send>;

/// A type-erased acceptor: sees the new tendril, returns its application or a rejection.
pub type Acceptor = Box<dyn FnMut(&mut Tendril) -> Result<BoxApp, Reject> + Send>;

/// The acceptor as a manager's listener and connect calls share it.
pub type SharedAcceptor = Arc<Mutex<Acceptor>>;

/// Turn a typed acceptor closure into the shared, type-erased form. Its panics, and those of
/// the applications it makes, end only their own tendril ([`Isolated`]).
pub fn acceptor<A, F>(mut f: F) -> SharedAcceptor
where
    A: Application + Send + 'static,
    F: FnMut(&mut Tendril) -> Result<A, Reject> + Send + 'static,
{
    Arc::new(Mutex::new(Box::new(move |t: &mut Tendril| {
        crate::accept_isolated(t, &mut f).map(|app| Box::new(Isolated::new(app)) as BoxApp)
    })))
}

/// Makes each new tendril's (receive, send) framers before the acceptor sees it.
pub type FramerFactory =
    Arc<dyn Fn() -> (BoxFramer<bytes::Bytes>, BoxFramer<bytes::Bytes>) + Send + Sync>;

/// The default framers of a new tendril: `Identity` both ways (the acceptor picks others).
pub fn identity_framers() -> FramerFactory {
    Arc::new(|| (Identity::new().boxed(), Identity::new().boxed()))
}

/// Lock a mutex, shrugging off poisoning: a panicked application must not take down the
/// manager's bookkeeping.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
