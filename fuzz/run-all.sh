#!/usr/bin/env bash
# Build every fuzz target, then run each for SECONDS (default 20), one after the other, starting
# from its seeds in fuzz/seeds/<target>/, the saved inputs of earlier bugs in
# fuzz/regressions/<target>/ and the long runs' minimised corpus in fuzz/corpus/<target>/
# (copied to a temporary corpus, so all stay as they are). Crashes
# are written to fuzz/artifacts/<target>/. Exits non-zero if any target fails.
#
#   fuzz/run-all.sh [SECONDS]
#
# Uses `cargo +nightly fuzz` (AddressSanitizer) when a nightly toolchain is installed, else
# `cargo +stable fuzz ... --sanitizer none`. FUZZ_TOOLCHAIN=stable|nightly forces the choice.
# Installs cargo-fuzz if it is missing.
set -uo pipefail

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS]  (a positive whole number; default 20)" >&2
    exit 2
fi

fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz_dir/.." || exit 2

toolchain="${FUZZ_TOOLCHAIN:-}"
if [ -z "$toolchain" ]; then
    if cargo +nightly --version >/dev/null 2>&1; then
        toolchain=nightly
    else
        toolchain=stable
    fi
fi
case "$toolchain" in
    nightly) fuzz=(cargo +nightly fuzz) sanitizer=() ;;
    stable) fuzz=(cargo +stable fuzz) sanitizer=(--sanitizer none) ;;
    *)
        echo "FUZZ_TOOLCHAIN must be nightly or stable, not '$toolchain'" >&2
        exit 2
        ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 1
fi

echo "==> ${fuzz[*]} build ${sanitizer[*]}"
"${fuzz[@]}" build "${sanitizer[@]}" || exit 1

mapfile -t targets < <("${fuzz[@]}" list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "no fuzz targets found" >&2
    exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/tendril-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="$work/$t"
    mkdir -p "$corpus"
    # Seeds, the inputs of bugs found before (they must not crash), and the minimised corpus
    # of the long runs (fuzz/corpus/<target>/), so a short run starts where those ended.
    for d in seeds regressions corpus; do
        if [ -d "$fuzz_dir/$d/$t" ]; then
            cp -r "$fuzz_dir/$d/$t/." "$corpus/"
        fi
    done
    args=(-max_total_time="$seconds" -timeout=30 -print_final_stats=1)
    if [ -f "$fuzz_dir/dict/$t.dict" ]; then
        args+=(-dict="$fuzz_dir/dict/$t.dict")
    fi
    echo "==> $t: ${seconds}s"
    log="$work/$t.log"
    "${fuzz[@]}" run "${sanitizer[@]}" "$t" "$corpus" -- "${args[@]}" 2>&1 | tee "$log" |
        grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|Done [0-9]+ runs|==[0-9]+== ERROR|SUMMARY|.*panicked at)'
    statuses=("${PIPESTATUS[@]}") # read at once: the next command resets it
    status="${statuses[0]}"
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        summary+=("$t: FAILED (exit $status); see fuzz/artifacts/$t/")
        tail -n 40 "$log"
    else
        summary+=("$t: ok, ${runs:-?} executions in ${seconds}s")
    fi
done

echo
echo "==> fuzz summary"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz targets failed: ${failed[*]}" >&2
    exit 1
fi
