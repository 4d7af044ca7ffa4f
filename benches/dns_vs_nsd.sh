#!/usr/bin/env bash
# The `dns` example against NSD, the authoritative server many TLDs run, on the same zone and
# the same queries (issue 12 §5). Each server is pinned to core 0 with `taskset`, `dnsperf` to
# core 1; NSD runs one server process with response rate limiting off. Installs `nsd` and
# `dnsperf` from Debian when they are missing. Prints a markdown table.
#
#   [ROUNDS=3] benches/dns_vs_nsd.sh [seconds per run, default 6]
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

# CPU time (clock ticks, user + system) of the processes `pgrep "$@"` names: the server's own
# cost, whatever share of core 0 it got.
ticks() {
    local total=0 pid
    for pid in $(pgrep "$@"); do
        # utime and stime, fields 14 and 15, counted after the name in parentheses (NSD names
        # its processes "nsd: server 1", with spaces).
        total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}')))
    done
    echo "$total"
}

# One run: queries/s and CPU µs per query, for the server on port $1 (processes: pgrep "${@:3}").
measure() { # port, mode, pgrep arguments
    local before after q
    before=$(ticks "${@:3}")
    q=$(qps "$1" "$2")
    after=$(ticks "${@:3}")
    awk -v q="$q" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v s="$SECONDS_PER_RUN" \
        'BEGIN { printf "%.0f %.2f", q, (q > 0 ? t / hz * 1e6 / (q * s) : 0) }'
}

ROUNDS="${ROUNDS:-3}"
echo "Each row alternates the two servers $ROUNDS times ($SECONDS_PER_RUN s per run); the"
echo "ratio is of the medians. CPU is each server's user + system time per query."
echo
echo "| transport | tendril dns (q/s) | NSD (q/s) | ratio | tendril CPU µs/query | NSD CPU µs/query |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for mode in udp tcp; do
    ours=() theirs=()
    for _ in $(seq "$ROUNDS"); do
        ours+=("$(measure $PORT_TENDRIL "$mode" -f "target/release/dns --listen")")
        theirs+=("$(measure $PORT_NSD "$mode" -f "nsd -d -c $work/nsd.conf")")
    done
    field() { printf '%s\n' "${@:2}" | awk -v f="$1" '{ print $f }'; }
    runs() { printf '%s\n' "${@:2}" | awk -v f="$1" '{ printf "%s%s", (NR > 1 ? " / " : ""), $f }'; }
    q_ours=$(field 1 "${ours[@]}" | median)
    q_theirs=$(field 1 "${theirs[@]}" | median)
    ratio=$(awk -v a="$q_ours" -v b="$q_theirs" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    printf '| %s | %s (%s) | %s (%s) | %s× | %s | %s |\n' "$mode" \
        "$q_ours" "$(runs 1 "${ours[@]}")" "$q_theirs" "$(runs 1 "${theirs[@]}")" "$ratio" \
        "$(field 2 "${ours[@]}" | median)" "$(field 2 "${theirs[@]}" | median)"
done
