//! The real clients the example tests talk to, and what happens when one is missing.
//!
//! A missing client skips its test with a notice written straight to the terminal (not through
//! the test harness's capture, which would hide it on a pass). Under `TENDRIL_REQUIRE_CLIENTS=1`
//! a missing client fails the test instead: `scripts/test` sets it whenever it could install
//! every client, so a skip never counts as a pass where installing was possible.

// Each test binary includes this module and uses only its own clients.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// A client program and the Debian package that has it.
pub struct Client {
    program: &'static str,
    version_arg: &'static str,
    package: &'static str,
}

pub const SOCAT: Client = Client {
    program: "socat",
    version_arg: "-V",
    package: "socat",
};
pub const OPENSSL: Client = Client {
    program: "openssl",
    version_arg: "version",
    package: "openssl",
};
pub const DIG: Client = Client {
    program: "dig",
    version_arg: "-v",
    package: "bind9-dnsutils",
};
pub const SWAKS: Client = Client {
    program: "swaks",
    version_arg: "--version",
    package: "swaks",
};
pub const PYTHON3: Client = Client {
    program: "python3",
    version_arg: "--version",
    package: "python3",
};

impl Client {
    /// `true` if the client runs. If it does not, the caller's test must return at once: a
    /// notice says it was skipped, or, under `TENDRIL_REQUIRE_CLIENTS=1`, the test fails here.
    pub fn available(&self, test: &str) -> bool {
        let found = Command::new(self.program)
            .arg(self.version_arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if found {
            return true;
        }
        assert!(
            std::env::var("TENDRIL_REQUIRE_CLIENTS").as_deref() != Ok("1"),
            "{test}: {} is not on PATH, and TENDRIL_REQUIRE_CLIENTS=1 requires it \
             (apt-get install {})",
            self.program,
            self.package
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED {test}: {} is not installed; `scripts/test` installs it \
             (apt-get install {}) ***",
            self.program,
            self.package
        );
        false
    }
}
