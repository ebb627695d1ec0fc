#!/usr/bin/env bash
# bench/runbook.sh - the deployment runbook as a careful human would script it in bash: the
# baseline ("anchor") that `fab deploy` is compared with by bench/run.py.
#
# It does the runbook steps that `fab deploy` does on the staging host, over ONE multiplexed
# OpenSSH connection (ControlMaster), and prints its own step timings and total to stderr:
#
#   connect        one ssh master connection; every later command rides on it
#   compose        detect the host's Compose once: `docker compose` (v2) or `docker-compose` (v1)
#   git pull       refuse a dirty tree or another branch; git fetch; merge --ff-only
#   env diff       .env.production vs .env.staging by key; values are compared on the host, never printed
#   record images  the running image (ref, image ID, repo digests) of each deployed service, saved
#                  on the host before anything is pulled (the rollback target)
#   deps up        compose up -d postgres redis
#   db ready       compose exec -T postgres pg_isready, every 0.25 s until it answers
#   alembic        compose exec -T backend alembic upgrade head
#   pull           compose pull of the deployed services
#   up             compose up -d
#   health         curl the backend's /health every 0.25 s until it answers 2xx
#   smoke          the two smoke URLs through the proxy must answer 2xx
#   logs           the last 100 log lines of each deployed service, scanned for error patterns
#
# Usage: bench/runbook.sh   (settings below can be overridden from the environment)
# Exit status: 0 deployed and serving; 1 a step failed (its name and output are on stderr).
set -euo pipefail

SSH_CONFIG=${SSH_CONFIG:-/var/lib/ai-doc-qa-sandbox/client/ssh_config}
SSH_HOST=${SSH_HOST:-ai-doc-qa-staging}
APP_DIR=${APP_DIR:-/var/lib/ai-doc-qa-sandbox/app/ai-doc-qa}
BRANCH=${BRANCH:-main}
COMPOSE_FILE=${COMPOSE_FILE:-docker-compose.production.yml}
SERVICES=${SERVICES:-"backend model_server proxy"}
DEPENDENCIES=${DEPENDENCIES:-"postgres redis"}
DB_READY=${DB_READY:-"pg_isready -h 127.0.0.1 -p 5433 -U postgres"}
HEALTH_URL=${HEALTH_URL:-http://127.0.0.1:8000/health}
SMOKE_URLS=${SMOKE_URLS:-"http://127.0.0.1:8080/api/v1/documents http://127.0.0.1:8080/health"}
LOG_TAIL=${LOG_TAIL:-100}
LOG_ERROR_PATTERN=${LOG_ERROR_PATTERN:-'\berror\b|critical|traceback|fatal|panic|connection refused'}
WAIT_SECONDS=${WAIT_SECONDS:-60}

WORK=$(mktemp -d)
CONTROL=$WORK/master.sock
COMMANDS_LOG=$WORK/commands   # one line per remote command (a counter that survives subshells)
: >"$COMMANDS_LOG"
SSH=(ssh -F "$SSH_CONFIG" -o ControlPath="$CONTROL")

# ---- timing ------------------------------------------------------------------------------------
# $EPOCHREALTIME without its dot is a microsecond count: timing costs no fork.
usec() { echo "${EPOCHREALTIME/./}"; }
seconds_since() { # START_USEC -> "1.234"
  local d=$(($(usec) - $1))
  printf '%d.%03d' $((d / 1000000)) $((d % 1000000 / 1000))
}
T0=$(usec)
STEP=""
STEP_T0=0
step() { # end the running step (printing its time), start the next one
  [[ -z $STEP ]] || printf 'runbook: step %-14s %s s\n' "$STEP" "$(seconds_since "$STEP_T0")" >&2
  STEP=$1
  STEP_T0=$(usec)
}

# ---- the one ssh connection ----------------------------------------------------------------------
# remote CMD... - run a command on the host over the master connection.
remote() {
  echo "$*" >>"$COMMANDS_LOG"
  "${SSH[@]}" -n "$SSH_HOST" "$@"
}
# remote_script ARGS... <<'EOF' - run a bash script given on stdin, with ARGS as $1...
remote_script() {
  echo "bash -s $*" >>"$COMMANDS_LOG"
  "${SSH[@]}" "$SSH_HOST" bash -s -- "$(printf '%q ' "$@")"
}
close_master() {
  "${SSH[@]}" -O exit "$SSH_HOST" 2>/dev/null || true
  rm -rf "$WORK"
}
finish() {
  local rc=$?
  [[ $rc -eq 0 ]] || echo "runbook: FAILED in step ${STEP:-?} (exit $rc)" >&2
  close_master
}
trap finish EXIT

# `cd APP && <compose> -f FILE ...`; $COMPOSE is detected once, below.
COMPOSE=""
compose() { remote "cd $(printf '%q' "$APP_DIR") && $COMPOSE -f $(printf '%q' "$COMPOSE_FILE") $*"; }
# compose_quiet ARGS... - compose, its output without v2's "attribute `version` is obsolete"
# warning, and its exit status.
compose_quiet() {
  local out rc=0
  out=$(compose "$@" 2>&1) || rc=$?
  grep -v 'attribute `version` is obsolete' <<<"$out" || true
  return $rc
}

# ================================================================================================
step connect
# -f: background after authentication; ControlPersist: the master outlives this ssh command and
# ends by itself 60 s after the last use if this script dies before `-O exit`.
# Its stdout/stderr must not be this script's: a reader of our output would wait for the master.
"${SSH[@]}" -o ControlMaster=yes -o ControlPersist=60 -f -N "$SSH_HOST" >/dev/null 2>"$WORK/master.err" ||
  { cat "$WORK/master.err" >&2; exit 1; }

step compose
COMPOSE=$(remote 'if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo docker-compose; fi')
echo "compose: $COMPOSE"

step "git pull"
remote_script "$APP_DIR" "$BRANCH" <<'EOF'
set -e
cd "$1"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "refusing to pull: tracked files are modified:" >&2
  git status --short --untracked-files=no >&2
  exit 1
fi
[ "$(git rev-parse --abbrev-ref HEAD)" = "$2" ] || { echo "refusing to pull: not on branch $2" >&2; exit 1; }
old=$(git rev-parse HEAD)
git fetch --quiet origin "$2"
git merge --ff-only --quiet "origin/$2"
new=$(git rev-parse HEAD)
echo "git: ${old:0:10} -> ${new:0:10}"
git log --oneline --no-decorate "$old..$new"
EOF

step "env diff"
# Keys only: the values are compared on the host and never leave it.
remote_script "$APP_DIR" <<'EOF'
cd "$1"
awk '
  /^[[:space:]]*(#|$)/ { next }
  { sub(/^[[:space:]]*export[[:space:]]+/, ""); key = $0; sub(/=.*/, "", key); value = substr($0, length(key) + 2) }
  FNR == NR { left[key] = value; next }
  { right[key] = value }
  END {
    for (k in left)  if (!(k in right)) print "env: only in .env.production: " k; else if (left[k] != right[k]) print "env: changed: " k
    for (k in right) if (!(k in left))  print "env: only in .env.staging: " k
  }' .env.production .env.staging | sort
EOF

step "record images"
# The rollback target, saved on the host before `pull` can move a mutable tag.
remote_script "$APP_DIR" "$COMPOSE" "$COMPOSE_FILE" "$SERVICES" <<'EOF'
set -e
cd "$1"
mkdir -p .deploy
ids=$($2 -f "$3" ps -q $4 2> >(grep -v 'is obsolete' >&2))
docker inspect --format '{{index .Config.Labels "com.docker.compose.service"}} {{.Config.Image}} {{.Image}} {{.State.Health.Status}}' $ids >.deploy/runbook-images-before
images=$(awk '{ print $3 }' .deploy/runbook-images-before | sort -u)
docker image inspect --format '{{.Id}} {{json .RepoDigests}}' $images >>.deploy/runbook-images-before
sed 's/^/before: /' .deploy/runbook-images-before
EOF

step "deps up"
compose_quiet up -d $DEPENDENCIES

step "db ready"
compose_quiet "exec -T postgres sh -c 'deadline=\$((\$(date +%s) + $WAIT_SECONDS)); until $DB_READY >/dev/null; do [ \$(date +%s) -lt \$deadline ] || exit 1; sleep 0.25; done'"

step alembic
out=$(compose_quiet exec -T backend alembic upgrade head) ||
  { echo "$out" >&2; echo "runbook: alembic upgrade head failed" >&2; exit 1; }
grep 'Running upgrade' <<<"$out" || echo "alembic: no pending migration"

step pull
compose_quiet pull --quiet $SERVICES

CHANGE_T0=$(usec)   # the first command that changes what serves
step up
compose_quiet up -d

step health
remote "deadline=\$((\$(date +%s) + $WAIT_SECONDS)); until curl -fsS --max-time 2 $HEALTH_URL 2>/dev/null; do [ \$(date +%s) -lt \$deadline ] || exit 1; sleep 0.25; done; echo"
echo "runbook: healthy after up, change window $(seconds_since "$CHANGE_T0") s" >&2

step smoke
remote "for u in $SMOKE_URLS; do printf 'smoke: %s ' \$u; curl -fsS -o /dev/null -w '%{http_code}\n' --max-time 10 \$u || exit 1; done"

step logs
matches=$(compose logs --no-color --tail="$LOG_TAIL" $SERVICES 2>/dev/null | grep -Eic "$LOG_ERROR_PATTERN" || true)
echo "logs: $matches line(s) match the error pattern in the last $LOG_TAIL lines of $SERVICES"

step ""
echo "runbook: total $(seconds_since "$T0") s, $(wc -l <"$COMMANDS_LOG") remote commands" >&2
