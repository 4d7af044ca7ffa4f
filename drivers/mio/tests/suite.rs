//! The driver-agnostic suite (`tendril-driver-suite`), run on the mio loop: the proof that a
//! loop of one's own drives everything the other drivers do.

use std::future::Future;
use std::io;
use tendril_driver_suite::{Glue, Glued};
use tendril_net::runtime::Manager;

/// Every manager on the one mio loop; the test thread waits with `block_on`.
#[derive(Default)]
struct Mio;

impl Glue for Mio {
    type Context = ();

    fn manager(&self, proto: &str, endpoint: &str, _: Option<usize>) -> io::Result<(Manager, ())> {
        Ok((tendril_mio::get_manager(proto, endpoint)?, ()))
    }

    fn block_on<F: Future>(_: &(), future: F) -> F::Output {
        futures::executor::block_on(future)
    }
}

type MioDriver = Glued<Mio>;

tendril_driver_suite::driver_suite!(MioDriver);
