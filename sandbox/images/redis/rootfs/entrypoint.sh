#!/bin/sh
# The password goes into a private config file rather than onto the command line, where
# `ps` and `docker top` would show it.
set -eu
: "${REDIS_PASSWORD:?REDIS_PASSWORD must be set (env_file .env.production)}"
conf=/tmp/redis.conf
(umask 077; cat > "$conf" <<CONF
bind 127.0.0.1
port 6380
protected-mode yes
requirepass $REDIS_PASSWORD
save ""
appendonly no
dir /tmp
CONF
)
exec redis-server "$conf"
