#!/usr/bin/env bash
# The `dns` example against NSD, the authoritative server many TLDs run, on the same zone and
# the same queries (issue 12 §5). Each server is pinned to core 0 with `taskset`, `dnsperf` to
# core 1; NSD runs one server process with response rate limiting off. Installs `nsd` and
# `dnsperf` from Debian when they are missing. Prints a markdown table.
#
#   benches/dns_vs_nsd.sh [seconds per run, default 6]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-6}"
PORT_TENDRIL=15353
PORT_NSD=15354

need() {
    command -v "$1" >/dev/null 2>&1 && return
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    $sudo apt-get update -qq >/dev/null
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need nsd nsd
need dnsperf dnsperf
need dig dnsutils
NSD=$(command -v nsd || echo /usr/sbin/nsd)

work=$(mktemp -d)
cleanup() {
    kill $(cat "$work/nsd.pid" 2>/dev/null) $(jobs -p) 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
zone="$PWD/examples/zones/example.test.zone"

# The queries: answers, a second address family, NXDOMAIN, MX, a CNAME chain, TXT.
cat >"$work/queries" <<QUERIES
www.example.test A
www.example.test AAAA
nothing.example.test A
example.test MX
chain.example.test A
text.example.test TXT
mail.example.test A
alias.example.test A
QUERIES

cat >"$work/nsd.conf" <<CONF
server:
    ip-address: 127.0.0.1@$PORT_NSD
    server-count: 1
    username: ""
    database: ""
    zonesdir: "$work"
    pidfile: "$work/nsd.pid"
    xfrdfile: "$work/xfrd.state"
    zonelistfile: "$work/zone.list"
    logfile: "$work/nsd.log"
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    verbosity: 0
remote-control:
    control-enable: no
zone:
    name: example.test
    zonefile: "$zone"
CONF

cargo build -q --release -p tendril-examples --bin dns
taskset -c 0 target/release/dns --listen "127.0.0.1:$PORT_TENDRIL" >"$work/tendril.log" 2>&1 &
taskset -c 0 "$NSD" -d -c "$work/nsd.conf" >"$work/nsd.out" 2>&1 &

# Both answer before the runs start.
for port in $PORT_TENDRIL $PORT_NSD; do
    for _ in $(seq 50); do
        dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" www.example.test A | grep -q 192.0.2.10 && break
        sleep 0.1
    done
done

qps() { # port, mode
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$1" -m "$2" -d "$work/queries" -c 4 -q 200 \
        -l "$SECONDS_PER_RUN" 2>/dev/null | awk '/Queries per second/ {print $4}'
}

echo "| transport | tendril dns (q/s) | NSD (q/s) | ratio |"
echo "| --- | ---: | ---: | ---: |"
for mode in udp tcp; do
    ours=$(qps $PORT_TENDRIL $mode)
    theirs=$(qps $PORT_NSD $mode)
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    printf '| %s | %.0f | %.0f | %s× |\n' "$mode" "$ours" "$theirs" "$ratio"
done
