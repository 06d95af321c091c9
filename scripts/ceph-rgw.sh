#!/usr/bin/env bash
# A throwaway Ceph RGW for benchmarks and opt-in tests: a single-node cluster (one monitor,
# one OSD on memstore, one radosgw) from Debian's packages (`apt-get install ceph-mon ceph-osd
# radosgw`, Ceph 16.2), entirely under DIR (config, keyring, monitor and OSD data, logs,
# admin sockets), on 127.0.0.1, with one S3 user and one bucket. No systemd; run as root.
#
#   scripts/ceph-rgw.sh start DIR PORT BUCKET   create the cluster in DIR if it has none
#                                               (~3 s), start it, wait until RGW answers,
#                                               create BUCKET; prints the AWS_* settings to
#                                               reach it (a restart on the same DIR, ~2 s,
#                                               keeps its objects)
#   scripts/ceph-rgw.sh stop DIR                stop the three daemons
#
# PORT is RGW's S3 port; the monitor takes PORT+1 (msgr2) and PORT+2 (msgr1), the OSD a few
# ports from 6800 up (Ceph's range). The OSD keeps objects in memory (memstore, at most
# CEPH_OSD_BYTES, default 4 GiB of RAM) and writes them to DIR when stopped; a kill -9
# loses them.
set -euo pipefail

key=kvstoretest
secret=kvstoretestsecret

ceph_cli() { timeout 30 ceph -c "$dir/ceph.conf" "$@"; }

# Starts a daemon in the foreground of a subshell holding no descriptor of the starter (a
# caller waiting for this script by a pipe must not wait for the daemons too); NAME.pid.
launch() {
    local name=$1; shift
    (
        for fd in /proc/self/fd/*; do fd=${fd##*/}; (( fd > 2 )) && eval "exec $fd>&-"; done
        exec "$@"
    ) </dev/null >"$dir/log/$name.out" 2>&1 &
    echo $! >"$dir/$name.pid"
}

# Stops the daemons of the cluster in $dir, the last started first.
stop_daemons() {
    for name in rgw osd mon; do
        [[ -f $dir/$name.pid ]] || continue
        pid=$(cat "$dir/$name.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/$name.pid"
    done
    rm -f "$dir"/run/*.asok
}

alive() { kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null || { echo "ceph-rgw.sh: $1 exited; see $dir/log/$1.out and $dir/log/" >&2; exit 1; }; }

case "${1:-}" in
start)
    dir=$(realpath -m "$2") port=$3 bucket=$4
    for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool; do
        command -v "$tool" >/dev/null || { echo "ceph-rgw.sh: $tool is not installed (apt-get install ceph-mon ceph-osd radosgw)" >&2; exit 1; }
    done
    (( port >= 1024 && port <= 65533 )) || { echo "ceph-rgw.sh: PORT $port is not in 1024..65533" >&2; exit 1; }
    [[ $(id -u) == 0 ]] || { echo "ceph-rgw.sh: run as root (the daemons keep their data under DIR as root)" >&2; exit 1; }
    for name in mon osd rgw; do
        [[ -f $dir/$name.pid ]] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null \
            && { echo "ceph-rgw.sh: a cluster already runs in $dir ($name, pid $(cat "$dir/$name.pid")); stop it first" >&2; exit 1; }
    done
    # A client of this cluster would reach another one listening on these ports (and an
    # `osd new` would change it).
    for p in "$port" $((port + 1)) $((port + 2)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && { echo "ceph-rgw.sh: port $p is already in use; choose another PORT" >&2; exit 1; }
    done
    # A start that fails stops what it started.
    trap '[[ $? == 0 ]] || stop_daemons' EXIT
    mkdir -p "$dir/mon" "$dir/osd" "$dir/rgw" "$dir/log" "$dir/run" "$dir/crash"
    if [[ ! -f $dir/ceph.conf ]]; then
        fsid=$(cat /proc/sys/kernel/random/uuid)
        # auth none everywhere, but the monitor still offers only secure mode to clients
        # unless `ms mon client mode` allows crc; size-1 pools; nothing outside DIR.
        cat >"$dir/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$((port + 1)),v1:127.0.0.1:$((port + 2))]
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
keyring = $dir/keyring
run dir = $dir/run
admin socket = $dir/run/\$cluster-\$name.\$pid.asok
log file = $dir/log/\$cluster-\$name.log
mon cluster log file = $dir/log/\$cluster.\$channel.log
crash dir = $dir/crash
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
osd objectstore = memstore
# memstore writes its objects to the OSD's directory only on a clean shutdown.
osd fast shutdown = false
memstore device bytes = ${CEPH_OSD_BYTES:-4294967296}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
# A proposal every 0.1 s, not every 1 s: RGW creates its pools one by one at start.
paxos propose interval = 0.1
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
rgw data = $dir/rgw/\$cluster-\$id

[client.rgw.kvstore]
rgw frontends = beast endpoint=127.0.0.1:$port
rgw dns name = 127.0.0.1
EOF
        ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
        monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$((port + 1)),v1:127.0.0.1:$((port + 2))]" \
            "$dir/monmap" >/dev/null
        ceph-mon -c "$dir/ceph.conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring" \
            >"$dir/log/mkfs-mon.out" 2>&1 || { echo "ceph-rgw.sh: ceph-mon --mkfs failed; see $dir/log/mkfs-mon.out" >&2; exit 1; }
    fi
    launch mon ceph-mon -c "$dir/ceph.conf" -f -i a
    # The monitor answers when a client gets the OSD map.
    for _ in $(seq 1 60); do ceph_cli osd stat >/dev/null 2>&1 && break; alive mon; sleep 0.5; done
    ceph_cli osd stat >/dev/null 2>&1 || { echo "ceph-rgw.sh: the monitor does not answer; see $dir/log/" >&2; exit 1; }
    if [[ ! -d $dir/osd/ceph-0 ]]; then
        uuid=$(cat /proc/sys/kernel/random/uuid)
        id=$(ceph_cli osd new "$uuid")
        [[ $id == 0 ]] || { echo "ceph-rgw.sh: the new OSD got id $id, not 0" >&2; exit 1; }
        mkdir -p "$dir/osd/ceph-0"
        ceph-osd -c "$dir/ceph.conf" -i 0 --mkfs --osd-uuid "$uuid" >"$dir/log/mkfs-osd.out" 2>&1 \
            || { echo "ceph-rgw.sh: ceph-osd --mkfs failed; see $dir/log/mkfs-osd.out" >&2; exit 1; }
    fi
    launch osd ceph-osd -c "$dir/ceph.conf" -f -i 0
    for _ in $(seq 1 120); do
        [[ $(ceph_cli osd dump -f json 2>/dev/null | python3 -c 'import json,sys; print(sum(o["up"] for o in json.load(sys.stdin)["osds"]))' 2>/dev/null) == 1 ]] && break
        alive osd; sleep 0.5
    done
    [[ $(ceph_cli osd dump -f json | python3 -c 'import json,sys; print(sum(o["up"] for o in json.load(sys.stdin)["osds"]))') == 1 ]] \
        || { echo "ceph-rgw.sh: the OSD is not up after 60 s; see $dir/log/" >&2; exit 1; }
    launch rgw radosgw -c "$dir/ceph.conf" -f -n client.rgw.kvstore
    # RGW creates its pools, then listens; an unsigned GET / is answered (an empty bucket list).
    code=000
    for _ in $(seq 1 240); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)
        [[ $code != 000 ]] && break
        alive rgw; sleep 0.25
    done
    [[ $code != 000 ]] || { echo "ceph-rgw.sh: RGW does not answer on port $port after 60 s; see $dir/log/" >&2; exit 1; }
    if ! radosgw-admin -c "$dir/ceph.conf" user info --uid=kvstore >/dev/null 2>&1; then
        radosgw-admin -c "$dir/ceph.conf" user create --uid=kvstore --display-name=kvstore \
            --access-key="$key" --secret-key="$secret" >"$dir/log/user.out" 2>&1 \
            || { echo "ceph-rgw.sh: radosgw-admin user create failed; see $dir/log/user.out" >&2; exit 1; }
    fi
    # RGW, like AWS, requires x-amz-content-sha256 on SigV4 requests (curl sends none):
    # without it the signature never matches. This one is the SHA-256 of the empty body.
    code=$(curl -s -o "$dir/log/bucket.out" -w '%{http_code}' -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" \
        -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
        --user "$key:$secret" "http://127.0.0.1:$port/$bucket")
    # 409 BucketAlreadyExists: a restart on the same DIR keeps its bucket.
    [[ $code == 200 || $code == 409 ]] || { echo "ceph-rgw.sh: creating bucket $bucket answered $code: $(cat "$dir/log/bucket.out")" >&2; exit 1; }
    echo "AWS_ENDPOINT_URL_S3=http://127.0.0.1:$port"
    echo "AWS_ACCESS_KEY_ID=$key"
    echo "AWS_SECRET_ACCESS_KEY=$secret"
    echo "AWS_REGION=us-east-1"
    ;;
stop)
    dir=$2
    stop_daemons
    ;;
*)
    echo "usage: $0 start DIR PORT BUCKET | stop DIR" >&2
    exit 1
    ;;
esac
