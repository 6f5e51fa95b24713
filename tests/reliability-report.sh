#!/bin/sh
# reliability-report.sh DOC OUTDIR FUZZLOGS CORPUS
#
# Rewrites the figures section of DOC (docs/RELIABILITY.md), between the lines
# "<!-- figures:begin" and "<!-- figures:end -->", from what the last runs left:
#   OUTDIR/crash.txt     `key value` lines of bench/crash-test.c (make crash-test)
#   OUTDIR/tests.txt     run-tests output of the reliability areas (make reliability-report)
#   OUTDIR/valgrind.txt  run-tests output under valgrind (make valgrind)
#   OUTDIR/asan.txt      the output of `make asan`, when saved there
#   FUZZLOGS/<t>.log     libFuzzer's output with -print_final_stats=1 (make fuzz)
#   CORPUS/<t>/          the committed corpus
# A missing input leaves its rows saying "not run".  POSIX sh and awk only.
set -eu
doc=$1 out=$2 fuzzlogs=$3 corpus=$4
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.new"' EXIT

kv() { # kv FILE KEY: the value of KEY in a `key value` file, or "-"
  if [ -f "$1" ]; then awk -v k="$2" '$1 == k { $1 = ""; sub(/^ /, ""); print; f = 1 } END { if (!f) print "-" }' "$1"; else echo "-"; fi
}
num() { # thousands separators
  echo "$1" | awk '{ n = $1; if (n !~ /^[0-9]+$/) { print n; exit } s = ""; while (length(n) > 3) { s = "," substr(n, length(n) - 2) s; n = substr(n, 1, length(n) - 3) } print n s }'
}

{
  echo "<!-- figures:begin (written by \`make reliability-report\` from the last runs; do not edit by hand) -->"
  echo
  rev=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
  dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | head -1)
  echo "Report written $(date -u +%Y-%m-%d) at commit \`$rev\`${dirty:+ (with uncommitted changes)}; each block says when its run was made."
  echo
  c=$out/crash.txt
  if [ -f "$c" ]; then
    echo "**Crash harness** (\`make crash-test\`, $(kv "$c" crash.date), $(kv "$c" crash.cpus) CPUs, seed \`$(kv "$c" crash.seed)\`, $(kv "$c" crash.elapsed_s) s):"
    echo
    echo "| figure | value |"
    echo "|---|---|"
    echo "| kill -9 cycles under concurrent push load | $(num "$(kv "$c" crash.cycles)") |"
    echo "| kill moments after the load started | $(kv "$c" crash.kill_ms) ms |"
    echo "| pushes sent (load and retries) | $(num "$(kv "$c" crash.pushes)") |"
    echo "| events acknowledged (\`pushed\` read by the client) | $(num "$(kv "$c" crash.acked)") |"
    echo "| events in flight at the kills (sent, unanswered) | $(num "$(kv "$c" crash.inflight)") |"
    echo "| of which the log had kept, answered \`dup\` at their seq on retry | $(num "$(kv "$c" crash.inflight_kept)") |"
    echo "| \`dup\` answers checked against the original seq and ver | $(num "$(kv "$c" crash.dup_checked)") |"
    echo "| log head at the end (chain verified after every kill) | $(num "$(kv "$c" crash.head)") |"
    echo "| projection checks equal to a rebuild | $(num "$(kv "$c" crash.proj_checks)") |"
    echo "| **acknowledged events lost or changed** | **$(kv "$c" crash.lost)** |"
  else
    echo "**Crash harness**: not run (\`make crash-test\`)."
  fi
  echo
  fdate=$(ls -t "$fuzzlogs"/*.log 2>/dev/null | head -1)
  fdate=${fdate:+, run $(date -u -r "$fdate" +%Y-%m-%d)}
  echo "**Fuzzing** (\`make fuzz\`: clang 14 libFuzzer, ASan + UBSan, leaks detected$fdate):"
  echo
  echo "| target | executions | crashes, leaks, sanitizer reports | coverage (edges / features) | corpus kept | time |"
  echo "|---|---|---|---|---|---|"
  for t in frame event http chunk; do
    l=$fuzzlogs/$t.log
    n=$(ls "$corpus/$t" 2>/dev/null | wc -l | tr -d ' ')
    if [ -f "$l" ]; then
      execs=$(awk '/^stat::number_of_executed_units/ { print $NF }' "$l" | tail -1)
      secs=$(awk '/^Done [0-9]+ runs in/ { print $5 }' "$l" | tail -1)
      cov=$(awk '/DONE|INITED/ { for (i = 1; i <= NF; i++) { if ($i == "cov:") c = $(i + 1); if ($i == "ft:") f = $(i + 1) } } END { print c " / " f }' "$l")
      bad=$(grep -c -E '^==[0-9]+==ERROR|runtime error:|FUZZ_CHECK|deadly signal|LeakSanitizer' "$l" || true)
      echo "| fuzz-$t | $(num "${execs:-?}") | $bad | $cov | $n inputs | ${secs:-?} s |"
    else
      echo "| fuzz-$t | not run | - | - | $n inputs | - |"
    fi
  done
  echo
  t=$out/tests.txt
  if [ -f "$t" ]; then
    echo "**Tests of the reliability areas** (\`crash/ faults/ netfaults/ fuzz/\`, part of \`make test\`, run $(date -u -r "$t" +%Y-%m-%d)): $(tail -1 "$t")."
    grep -E '^  (oom [a-z]+|crash|faults|netfaults|fuzz):' "$t" | grep -v ': seed ' | sed 's/^  /- /' || true
  else
    echo "**Tests of the reliability areas**: not run."
  fi
  echo
  a=$out/asan.txt
  if [ -f "$a" ]; then
    echo "**AddressSanitizer + UBSan** (\`make asan\`, the whole suite, run $(date -u -r "$a" +%Y-%m-%d)): $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$a" | tail -1)."
  else
    echo "**AddressSanitizer + UBSan**: not recorded (\`make asan > $out/asan.txt\`)."
  fi
  echo
  v=$out/valgrind.txt
  if [ -f "$v" ]; then
    nvg=$(ls "$out/vg" 2>/dev/null | wc -l | tr -d ' ')
    verdict=$(grep -E '^valgrind: ' "$v" | tail -1 | sed 's/^valgrind: //')
    echo "**Valgrind** (\`make valgrind\`, memcheck, definite leaks are errors, run $(date -u -r "$v" +%Y-%m-%d)): $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$v" | tail -1); $nvg processes checked (test processes, the servers they started, the corpus replays): ${verdict:-see $v}."
  else
    echo "**Valgrind**: not run (\`make valgrind\`)."
  fi
  echo
  echo "<!-- figures:end -->"
} > "$tmp"

awk -v figs="$tmp" '
  /^<!-- figures:begin/ { while ((getline line < figs) > 0) print line; skip = 1; next }
  /^<!-- figures:end -->/ { skip = 0; next }
  !skip { print }
' "$doc" > "$tmp.new"
mv "$tmp.new" "$doc"
echo "reliability-report: figures of $doc rewritten"
