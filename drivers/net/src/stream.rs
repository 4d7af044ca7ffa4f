//! What every driver does the same way with a stream connection's reads.

use tendril_core::Tendril;

/// The most a busy stream connection reads per system call (see [`grow_reads`]).
pub const MAX_READ: usize = 64 * 1024;

/// A stream read filled all the room it had: the peer sends faster than one read takes, so the
/// connection reads more at a time, doubling its [`read_size`](tendril_core::Config::read_size)
/// up to [`MAX_READ`] — fewer system calls, more frames dispatched per read and replies per
/// write. Drivers call this after such a read; an idle connection still gives its buffer back
/// (`release_idle_buffers`), so only busy ones hold the larger one.
pub fn grow_reads(tendril: &mut Tendril) {
    let mut config = *tendril.config();
    if config.read_size < MAX_READ {
        config.read_size = (config.read_size * 2).min(MAX_READ);
        tendril.set_config(config);
    }
}
