//! The live tendrils of a manager, shared by the drivers: kept by handle identity (several
//! unnamed Unix peers share one address pair), looked up by (local, remote).

use std::collections::HashMap;
use std::sync::Mutex;
use tendril_core::Addr;

/// What the table needs of a driver's tendril handle.
pub trait Tracked: Clone {
    /// Identifies the tendril (clones of one handle share it).
    fn key(&self) -> usize;
    /// The local address.
    fn local_addr(&self) -> &Addr;
    /// The peer's address.
    fn remote_addr(&self) -> &Addr;
    /// `true` once the connection has closed.
    fn is_closed(&self) -> bool;
}

/// A manager's live tendrils.
#[derive(Debug)]
pub struct LiveTendrils<H> {
    tendrils: Mutex<HashMap<usize, H>>,
}

impl<H> Default for LiveTendrils<H> {
    fn default() -> Self {
        LiveTendrils {
            tendrils: Mutex::new(HashMap::new()),
        }
    }
}

impl<H: Tracked> LiveTendrils<H> {
    /// Add a tendril.
    pub fn insert(&self, handle: &H) {
        crate::lock(&self.tendrils).insert(handle.key(), handle.clone());
    }

    /// Remove a tendril.
    pub fn remove(&self, handle: &H) {
        crate::lock(&self.tendrils).remove(&handle.key());
    }

    /// Every registered tendril, closed or not (for stop, which closes them all).
    pub fn all(&self) -> Vec<H> {
        crate::lock(&self.tendrils).values().cloned().collect()
    }

    /// The open tendrils.
    pub fn live(&self) -> Vec<H> {
        crate::lock(&self.tendrils)
            .values()
            .filter(|h| !h.is_closed())
            .cloned()
            .collect()
    }

    /// The open tendril at (local, remote), however the addresses are written.
    pub fn find(&self, local: &Addr, remote: &Addr) -> Option<H> {
        let (local, remote) = (local.canonical(), remote.canonical());
        crate::lock(&self.tendrils)
            .values()
            .find(|h| {
                !h.is_closed()
                    && h.local_addr().canonical() == local
                    && h.remote_addr().canonical() == remote
            })
            .cloned()
    }
}
