#!/usr/bin/env bash
# The whole comparison with tokio-util and plain Tokio in one run (about 9 minutes on two cores
# with the bench profile built; BENCHMARKS.md has the figures and what each one means):
#
#   benches/compare.sh [criterion options, e.g. --measurement-time 1]
#
# 1. the framers against tokio-util's codecs and a memchr scan, and the UDP tracker at 1k-1M
#    peers (criterion; the tables are summed up by benches/summary.py, ratios included);
# 2. allocations per frame and per datagram, bytes copied on the send path, memory per idle
#    connection and peer (dhat);
# 3. TCP and UDP echo over loopback and memory per idle TCP connection, against plain Tokio;
# 4. the chart of every ratio against its goal, benches/ratios.svg (shown in BENCHMARKS.md);
# 5. the `dns` example against NSD on UDP and TCP (benches/dns_vs_nsd.sh; installs nsd and
#    dnsperf from Debian when they are missing).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench -p tendril-core --bench framers --bench tracker -- "$@"
python3 benches/summary.py target/criterion
cargo bench -p tendril-core --bench alloc
mkdir -p target/compare
cargo bench -p tendril-tokio --bench socket | tee target/compare/socket.md
python3 benches/chart.py target/criterion target/compare/socket.md benches/ratios.svg
benches/dns_vs_nsd.sh | tee target/compare/dns.md
