#!/usr/bin/env bash
# Fuzzes each target for a bounded time, one after another, one fuzzing process at a time.
#
#   fuzz/run.sh [seconds-per-target] [target ...]     (default: 60 seconds, every target)
#
# Not part of tests/run.sh (too slow). Needs the nightly toolchain (`cargo +nightly`) and cargo-fuzz, which
# this script installs from crates.io when it is missing. Seeds are read from fuzz/corpus/<target>/ (kept in
# git); what a run discovers goes to fuzz/work/corpus/<target>/ (ignored, reused by the next run). A crash,
# a panic, a timeout (an input taking over 10 s) or a memory blow-up (over 2 GiB) is saved under
# fuzz/artifacts/<target>/ and makes the script exit non-zero once every target has run.
# Environment: FUZZ_SANITIZER (default address; none is faster), FUZZ_MAX_LEN (default 4096 bytes).
set -euo pipefail

secs=${1:-60}
shift || true
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs < 1)); then
    echo "usage: fuzz/run.sh [seconds-per-target] [target ...]" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
all_targets=(mysql_packet cometql ws_url client_command ws_frame proxy_header)
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing the nightly toolchain (cargo fuzz needs it)" >&2
    timeout 900 rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz" >&2
    timeout 1800 cargo install cargo-fuzz --version 0.13.2 --locked
fi

build_args=(--sanitizer "${FUZZ_SANITIZER:-address}")
echo "== building the fuzz targets (${build_args[*]})"
timeout 3600 cargo +nightly fuzz build "${build_args[@]}"

failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/work/corpus/$t" "fuzz/artifacts/$t"
    dict=()
    [[ -f fuzz/dict/$t.dict ]] && dict=("-dict=fuzz/dict/$t.dict")
    log="fuzz/work/$t.log"
    echo "== $t: $secs s"
    # One in-process fuzzer (libFuzzer's default: no -fork, no parallel jobs). -max_total_time bounds the
    # run; `timeout` bounds the process in case libFuzzer itself hangs.
    set +e
    timeout --kill-after=30 $((secs + 300)) \
        cargo +nightly fuzz run "${build_args[@]}" "$t" "fuzz/work/corpus/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="${FUZZ_MAX_LEN:-4096}" \
        -print_final_stats=1 "${dict[@]}" 2>&1 | tee "$log" | grep --line-buffered -E '^(INFO: Seed|#[0-9]+[[:space:]]+(INITED|DONE)|==[0-9]+==|thread .* panicked|SUMMARY|Done |stat::number_of_executed_units|artifact_prefix|Test unit written)'
    rc=${PIPESTATUS[0]}
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || true)
    corpus=$(find "fuzz/work/corpus/$t" -type f | wc -l)
    if ((rc == 0)); then
        result=ok
    else
        result="FAILED (exit $rc, see $log and fuzz/artifacts/$t/)"
        failed+=("$t")
    fi
    summary+=("$(printf '%-15s %6s s %12s execs  cov %6s  corpus %5s  %s' "$t" "$secs" "${execs:-?}" "${cov:-?}" "$corpus" "$result")")
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "fuzz/run.sh: findings in: ${failed[*]}" >&2
    exit 1
fi
