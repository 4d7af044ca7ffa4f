//! Running a test over many seeds, and replaying the one that failed.

use alloc::format;
use alloc::string::String;

use super::{Faults, Net};

/// The environment variable that replays one seed in [`check`].
pub const SEED_VAR: &str = "TENDRIL_SIM_SEED";
/// The environment variable that overrides how many seeds [`check`] runs.
pub const SEEDS_VAR: &str = "TENDRIL_SIM_SEEDS";

/// Run `test` on a fresh [`Net`] for each of `seeds` seeds (0, 1, 2, …), with `faults`.
///
/// - `TENDRIL_SIM_SEEDS=<n>` runs `n` seeds instead;
/// - `TENDRIL_SIM_SEED=<seed>` runs that one seed alone, to replay a failure.
///
/// A failing seed panics with its message, the seed, the end of its [`Trace`](super::Trace) and the command
/// that replays it. See the [module docs](super) for an example.
pub fn check(faults: Faults, seeds: u64, mut test: impl FnMut(&mut Net)) {
    if let Some(seed) = env_number(SEED_VAR) {
        run_seed(&faults, seed, &mut test);
        return;
    }
    for seed in 0..env_number(SEEDS_VAR).unwrap_or(seeds) {
        run_seed(&faults, seed, &mut test);
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name} must be a number, not {value:?}"),
    }
}

fn run_seed(faults: &Faults, seed: u64, test: &mut impl FnMut(&mut Net)) {
    let mut net = Net::new(seed, faults.clone());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&mut net)));
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(a panic without a message)");
        // The test's name is in the panic's header ("thread '<test>' panicked").
        std::panic::panic_any(format!(
            "seed {seed} failed: {message}\nwhat the network did last:\n{}replay it alone: \
             {SEED_VAR}={seed} cargo test <this test> -- --nocapture",
            net.trace
        ));
    }
}
