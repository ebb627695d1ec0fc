# sandbox/lib/fleet.sh — the fleet of `sandbox/ctl up --hosts N` (sourced by sandbox/ctl).
#
# Host 1 is the single-host sandbox (127.0.0.1). Host N (2..MAX_HOSTS) is the same kind of server
# in its own namespaces, so that the sample images' fixed ports (proxy 8080, backend 8000, model
# 8001, redis 6380, postgres 5433, all `network_mode: host`) and a rollback's `docker tag` stay
# per host:
#   - a network namespace ai-doc-qa-hostN (`ip netns`, only `lo`): every service of the host binds
#     127.0.0.1 there, exactly as on host 1;
#   - a persistent mount namespace (file $NS_DIR/mnt-N) in which $SANDBOX_ROOT/app is a bind
#     mount of $HOSTS_DIR/N/app: the stage's one APP_DIR is each host's own checkout, lock and
#     release record;
#   - its own dockerd (data-root, exec-root, socket under $HOSTS_DIR/N) and sshd, started inside
#     both namespaces; sshd's `SetEnv DOCKER_HOST` points at that dockerd;
#   - a forwarder (lib/nsforward.py) that carries 127.0.0.N:2222/:8080/:8000 of the machine into
#     the host, and the host's 127.0.0.1:5000 (registry), :5434 (host 1's PostgreSQL: the fleet's
#     one database) and :9100 (sink) out to the machine's.
# Inside host N, sandbox/ctl runs with SANDBOX_HOST=N (see `in_host`): its paths then name that
# host's run/log/sshd/docker dirs, and the same functions (reset, break, compose-exec) act on it.

netns_name() { echo "ai-doc-qa-host$1"; }
netns_file() { echo "/run/netns/$(netns_name "$1")"; }
mntns_file() { echo "$NS_DIR/mnt-$1"; }

# in_host N ARGS... — sandbox/ctl ARGS inside host N's namespaces.
in_host() {
  local n=$1
  shift
  nsenter --mount="$(mntns_file "$n")" --net="$(netns_file "$n")" -- \
    env SANDBOX_HOST="$n" SANDBOX_ROOT="$SANDBOX_ROOT" "$SANDBOX_DIR/ctl" "$@"
}

host_namespaces_exist() {
  [[ -e $(netns_file "$1") ]] && nsenter --mount="$(mntns_file "$1")" true 2>/dev/null
}

host_running() { host_namespaces_exist "$1" && pid_of "forward-$1" "nsforward.py" >/dev/null; }

# hosts_up — the extra hosts that run now (2..MAX_HOSTS).
hosts_up() {
  local n
  for ((n = 2; n <= MAX_HOSTS; n++)); do
    if host_running "$n"; then echo "$n"; fi
  done
}

ensure_host_namespaces() {
  local n=$1 name mnt
  name=$(netns_name "$n")
  mnt=$(mntns_file "$n")
  [[ -e $(netns_file "$n") ]] || ip netns add "$name"
  ip -n "$name" link set lo up
  # unshare --mount=FILE needs FILE on a mount that is not shared (else the namespace would
  # contain a reference to itself).
  install -d -m 700 "$NS_DIR"
  if ! mountpoint -q "$NS_DIR"; then
    mount --bind "$NS_DIR" "$NS_DIR"
    mount --make-private "$NS_DIR"
  fi
  if ! nsenter --mount="$mnt" true 2>/dev/null; then
    touch "$mnt"
    unshare --mount="$mnt" --propagation private true
    install -d -m 755 -o "$DEPLOY_USER" -g "$DEPLOY_USER" "$APP_PARENT" "$HOSTS_DIR/$n/app"
    nsenter --mount="$mnt" mount --bind "$HOSTS_DIR/$n/app" "$APP_PARENT"
    say "host $n: namespaces made (netns $name; $APP_PARENT = $HOSTS_DIR/$n/app inside)"
  fi
}

ensure_forwarder() {
  local n=$1 ns pid
  ns=$(netns_file "$n")
  if pid=$(pid_of "forward-$n" "nsforward.py"); then
    say "host $n: forwarder running (pid $pid)"
    return 0
  fi
  rm -f "$RUN_DIR/forward-$n.pid"
  local maps=(--map "127.0.0.$n:$SSH_PORT=$ns@127.0.0.1:$SSH_PORT")
  local port
  for port in 8080 8000; do maps+=(--map "127.0.0.$n:$port=$ns@127.0.0.1:$port"); done
  maps+=(--map "$ns@$REGISTRY=$REGISTRY" --map "$ns@127.0.0.1:$SHARED_DB_PORT=127.0.0.1:5433"
    --map "$ns@127.0.0.1:$SINK_PORT=127.0.0.1:$SINK_PORT")
  pid=$(start_bg "forward-$n" "$LOG_DIR/forward-$n.log" no "$PYTHON" "$SANDBOX_DIR/lib/nsforward.py" \
    --name "$SANDBOX_ROOT/host$n" "${maps[@]}")
  wait_until 10 forwarder sh -c "ss -Hltn 'sport = :$SSH_PORT' | grep -qF '127.0.0.$n:'" ||
    die "host $n: forwarder did not start: $(tail -5 "$LOG_DIR/forward-$n.log")"
  say "host $n: forwarder started (pid $pid): 127.0.0.$n:{$SSH_PORT,8080,8000} in; registry, database, sink out"
}

# fleet_up N — hosts 2..N running (each reset on its first start or after an image rebuild);
# hosts above N stopped. The hosts start in parallel; their output is prefixed.
fleet_up() {
  local want=$1 n pids=() t0
  t0=$(now)
  for ((n = want + 1; n <= MAX_HOSTS; n++)); do
    if host_namespaces_exist "$n" || pid_of "forward-$n" nsforward.py >/dev/null; then stop_extra_host "$n"; fi
  done
  echo "$want" >"$HOSTS_FILE"
  ((want > 1)) || return 0
  for ((n = 2; n <= want; n++)); do
    ensure_host_namespaces "$n"
    ensure_forwarder "$n"
    in_host "$n" _host-up "$IMAGES_REBUILT" 2>&1 | sed -u "s/^/[host $n] /" &
    pids+=($!)
  done
  local failed=no
  for n in "${pids[@]}"; do wait "$n" || failed=yes; done
  [[ $failed == no ]] || die "a fleet host did not come up (see the [host N] lines above)"
  for ((n = 2; n <= want; n++)); do
    ssh -F "$CLIENT_DIR/ssh_config" "$FLEET_ALIAS-$n" 'docker version --format "{{.Server.Version}}"' >/dev/null ||
      die "ssh $FLEET_ALIAS-$n 'docker version' failed"
  done
  say "fleet: hosts 1..$want up in $(elapsed "$t0") s: ssh -F $CLIENT_DIR/ssh_config $FLEET_ALIAS-N"
}

# Inside host N (SANDBOX_HOST=N): its dockerd and sshd, then its stack (reset when $1 == yes,
# i.e. the images were rebuilt, or on the first start).
cmd_host_up() {
  ((HOST_N > 1)) || die "_host-up runs inside an extra host"
  make_dirs
  STARTED=()
  IMAGES_REBUILT=${1:-no}
  ensure_dockerd
  write_sshd_config
  ensure_sshd
  up_app
}

# fleet_reset — every extra host that runs, back to the known v1 state (host 1 was reset first:
# registry, origin, database). In parallel.
fleet_reset() {
  local n pids=() failed=no
  for n in $(hosts_up); do
    in_host "$n" _host-reset 2>&1 | sed -u "s/^/[host $n] /" &
    pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n" || failed=yes; done
  [[ $failed == no ]] || die "a fleet host did not reset (see the [host N] lines above)"
}

stop_extra_host() {
  local n=$1
  if host_namespaces_exist "$n"; then
    in_host "$n" _host-down 2>&1 | sed "s/^/[host $n] /" || warn "host $n: stopping its daemons failed"
  fi
  stop_pid "forward-$n" nsforward.py 10
  if mountpoint -q "$(mntns_file "$n")" 2>/dev/null; then umount "$(mntns_file "$n")" || umount -l "$(mntns_file "$n")"; fi
  if [[ -e $(netns_file "$n") ]]; then ip netns del "$(netns_name "$n")" || warn "ip netns del $(netns_name "$n") failed"; fi
  say "host $n: stopped (namespaces removed)"
}

fleet_down() {
  local n
  for ((n = 2; n <= MAX_HOSTS; n++)); do
    if host_namespaces_exist "$n" || pid_of "forward-$n" nsforward.py >/dev/null || [[ -e $(netns_file "$n") ]]; then
      stop_extra_host "$n"
    fi
  done
  rm -f "$HOSTS_FILE"
}

fleet_status() {
  local n
  for n in $(hosts_up); do
    echo
    in_host "$n" status || true
  done
}

# on_host CMD --host N ARGS... — CMD run in host N (break, compose-exec, status).
on_host() {
  local cmd=$1 n=${3:-}
  shift 3 || die "usage: ctl $cmd --host N ..."
  [[ $cmd =~ ^(break|compose-exec|status)$ ]] || die "--host N goes with break, compose-exec or status, not $cmd"
  [[ $n =~ ^[1-9]$ ]] && ((n <= MAX_HOSTS)) || die "--host must be 1..$MAX_HOSTS"
  if ((n == 1)); then
    main "$cmd" "$@"
    return
  fi
  require_root
  host_running "$n" || die "host $n is not running ('sandbox/ctl up --hosts $n')"
  in_host "$n" "$cmd" "$@"
}
