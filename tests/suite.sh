#!/usr/bin/env bash
# `make test`'s runner: the unit tests beside the tests against the staging host, then both reports.
#
# The tests against the staging host (tests/integration, ~25 min on CI's 2 cores) spend much of
# their time waiting (health checks, the proxy, sshd); the unit tests (~3 min of CPU) run in that
# idle time at nice 19, so they barely slow the real deploys down (timing-sensitive ones, like the
# blue/green zero-failure prober, keep the CPU they had). Run one after the other, the suite came
# within a minute of its 30-minute budget (docs/testing.md).
#
# usage: tests/suite.sh BIN [PYTEST ARGS FOR THE INTEGRATION RUN...]   (BIN: the venv's bin dir)
# Exit status: the integration run's if it failed, else the unit run's.
set -uo pipefail
bin=${1:?usage: tests/suite.sh BIN [pytest args]}
shift
tmp=''
unit=''
# The unit run gets its own pytest base directory (the integration run keeps pytest's default,
# the last three kept for a look after a failure). A background job of a script starts with
# SIGINT ignored (no job control): `trap - INT` gives the unit run Ctrl-C back (unless this script
# was itself started with SIGINT ignored), so a Ctrl-C stops both runs as it stopped one; on the
# way out whatever is left of the unit run is TERMed and waited for. A TERM or HUP to this script
# alone takes effect when the integration run ends, as it did when make ran pytest itself.
cleanup() {
  if [[ -n $unit ]]; then
    kill -TERM "$unit" 2>/dev/null || true
    wait "$unit" 2>/dev/null || true
  fi
  [[ -z $tmp ]] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
tmp=$(mktemp -d)

(
  trap - INT
  exec nice -n 19 "$bin/pytest" tests --ignore=tests/integration -p no:cacheprovider --basetemp "$tmp/unit" \
    --durations=10 >"$tmp/unit.log" 2>&1
) &
unit=$!
echo "suite: unit tests running beside the integration tests (nice 19, pid $unit); their report follows these"
"$bin/pytest" tests/integration "$@"
integration=$?
wait "$unit"
unit_status=$?
unit=''
echo
echo "================ unit tests (run beside the integration tests) ================"
cat "$tmp/unit.log"
echo "suite: unit tests exited $unit_status, integration tests exited $integration"
((integration != 0)) && exit "$integration"
exit "$unit_status"
