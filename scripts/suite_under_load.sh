#!/usr/bin/env bash
# The test suite twice, each time with one busy loop on the other core: tests must assert
# counts and bounds in frames, never wall-clock figures a loaded machine stretches.
#   bash scripts/suite_under_load.sh        # logs in /tmp/suite-under-load-{1,2}.log
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for i in 1 2; do
    python3 -c "while True: pass" &
    load=$!
    start=$(date +%s)
    .venv/bin/python -m pytest -q -p no:cacheprovider > "/tmp/suite-under-load-$i.log" 2>&1
    rc=$?
    kill "$load"
    echo "run $i: rc=$rc in $(( $(date +%s) - start )) s: $(tail -1 "/tmp/suite-under-load-$i.log")"
    [ "$rc" -eq 0 ] || status=1
done
exit $status
