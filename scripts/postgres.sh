#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and benchmarks (Debian's postgresql-15), on
# 127.0.0.1 and a socket in DIR, with trust authentication and one database, kvstore.
#
#   scripts/postgres.sh start DIR PORT [LISTEN]
#                                         create the cluster in DIR if it has none, start it,
#                                         wait until it answers; prints KVSTORE_TEST_POSTGRES=URL.
#                                         LISTEN (default 127.0.0.1): addresses to listen on;
#                                         with others, clients from 10.0.0.0/8 are trusted too
#                                         (test hosts in network namespaces)
#   scripts/postgres.sh stop DIR [MODE]   stop it (MODE: fast, the default, or immediate: a crash)
#
# PostgreSQL refuses to run as root: as root the cluster belongs to the postgres user
# (runuser), and DIR is handed to it.
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[[ -x $bindir/pg_ctl ]] || { echo "postgres.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }

as_owner() {
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
start)
    dir=$2 port=$3 listen=${4:-127.0.0.1}
    (( port >= 1024 && port <= 65535 )) || { echo "postgres.sh: PORT $port is not in 1024..65535" >&2; exit 1; }
    mkdir -p "$dir/sock"
    [[ $(id -u) == 0 ]] && chown -R postgres: "$dir"
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        as_owner "$bindir/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
            || { echo "postgres.sh: initdb failed; see $dir/initdb.log" >&2; exit 1; }
        if [[ $listen != 127.0.0.1 ]]; then
            echo "host all all 10.0.0.0/8 trust" >>"$dir/data/pg_hba.conf"
        fi
    fi
    # The server keeps no descriptor of its starter: a caller waiting for this script (by a
    # pipe, or by a descriptor it watches for exit) must not wait for the server too.
    (
        for fd in /proc/self/fd/*; do fd=${fd##*/}; (( fd > 2 )) && eval "exec $fd>&-"; done
        as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
            -o "-p $port -k $dir/sock -c listen_addresses=$listen -c max_connections=200"
    ) </dev/null >/dev/null 2>&1 || { echo "postgres.sh: the server did not start; see $dir/server.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    if ! as_owner psql -h "$dir/sock" -p "$port" -U postgres -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'kvstore'" | grep -q 1; then
        as_owner psql -h "$dir/sock" -p "$port" -U postgres -d postgres -qc "CREATE DATABASE kvstore" >/dev/null
    fi
    echo "KVSTORE_TEST_POSTGRES=postgresql://postgres@127.0.0.1:$port/kvstore"
    ;;
stop)
    dir=$2 mode=${3:-fast}
    [[ -f $dir/data/postmaster.pid ]] || exit 0
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: scripts/postgres.sh start DIR PORT | stop DIR [fast|immediate]" >&2
    exit 1
    ;;
esac
