#!/usr/bin/env bash
# A single-node Garage (https://garagehq.deuxfleurs.fr), the S3 peer of
# `photon bench s3`: lmdb metadata and data blocks under one directory (so on
# the same filesystem as everything else the benchmark writes), one layout
# version, one access key with read/write/owner rights on one bucket.
#
#   scripts/garage.sh start DIR   # config + `garage server` in the background + setup
#   scripts/garage.sh stop DIR    # stops the server started by `start`
#   scripts/garage.sh config DIR  # writes DIR/garage.toml only
#   scripts/garage.sh setup DIR   # layout, key and bucket on a running server;
#                                 # writes DIR/s3.env and prints it
#
# Install Garage with `cargo install garage --version 2.5.0 --locked` (~/.cargo/bin).
# Settings (environment, with defaults):
#   GARAGE=garage            the binary
#   GARAGE_S3_PORT=3900      S3 API on 127.0.0.1
#   GARAGE_RPC_PORT=3901     RPC between nodes on 127.0.0.1
#   GARAGE_ADMIN_PORT=3903   admin API on 127.0.0.1
#   GARAGE_REGION=garage     s3_region: what clients must sign with
#   GARAGE_FSYNC=true        metadata_fsync and data_fsync (Garage's own default is false)
#   GARAGE_COMPRESSION=none  compression_level (Garage's default is zstd level 1)
#   GARAGE_BUCKET=photon-bench, GARAGE_KEY_NAME=photon-bench
#   GARAGE_STARTUP_S=60      how long setup waits for the node to answer
set -euo pipefail

GARAGE=${GARAGE:-garage}
if ! command -v "$GARAGE" >/dev/null && [ -x "$HOME/.cargo/bin/garage" ]; then
    GARAGE=$HOME/.cargo/bin/garage
fi
S3_PORT=${GARAGE_S3_PORT:-3900}
RPC_PORT=${GARAGE_RPC_PORT:-3901}
ADMIN_PORT=${GARAGE_ADMIN_PORT:-3903}
REGION=${GARAGE_REGION:-garage}
FSYNC=${GARAGE_FSYNC:-true}
COMPRESSION=${GARAGE_COMPRESSION:-none}
BUCKET=${GARAGE_BUCKET:-photon-bench}
KEY_NAME=${GARAGE_KEY_NAME:-photon-bench}
STARTUP_S=${GARAGE_STARTUP_S:-60}

usage() {
    echo "usage: $0 start|stop|config|setup DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
STEP=$1
DIR=$(mkdir -p "$2" && cd "$2" && pwd)
CONFIG=$DIR/garage.toml

g() { "$GARAGE" -c "$CONFIG" "$@"; }

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

write_config() {
    case $FSYNC in true | false) ;; *) echo "GARAGE_FSYNC must be true or false" >&2; exit 2 ;; esac
    mkdir -p "$DIR/meta" "$DIR/data"
    cat >"$CONFIG" <<EOF
# Written by scripts/garage.sh for photon bench s3.
metadata_dir = "$DIR/meta"
data_dir = "$DIR/data"
db_engine = "lmdb"
metadata_fsync = $FSYNC
data_fsync = $FSYNC
compression_level = "$COMPRESSION"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(random_hex 32)"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$ADMIN_PORT"
admin_token = "$(random_hex 16)"
EOF
}

# Waits until the node answers on RPC, then gives it a layout of one zone.
assign_layout() {
    local deadline=$((SECONDS + STARTUP_S))
    until g status >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            echo "garage did not answer \`garage status\` within ${STARTUP_S}s" >&2
            g status >&2 || true
            exit 1
        fi
        sleep 0.2
    done
    local node_id
    node_id=$(g node id -q 2>/dev/null || g node id)
    node_id=${node_id%%@*}
    g layout assign -z dc1 -c 1G "$node_id" >/dev/null
    g layout apply --version 1 >/dev/null
}

# Prints the value of a string field of the JSON on stdin.
json_field() { sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" | head -n1; }

create_key_and_bucket() {
    local key id secret
    key=$(g json-api CreateKey "{\"name\":\"$KEY_NAME\"}")
    id=$(json_field accessKeyId <<<"$key")
    secret=$(json_field secretAccessKey <<<"$key")
    if [ -z "$id" ] || [ -z "$secret" ]; then
        echo "cannot read the key garage created: $key" >&2
        exit 1
    fi
    g bucket create "$BUCKET" >/dev/null
    g bucket allow --read --write --owner "$BUCKET" --key "$id" >/dev/null
    cat >"$DIR/s3.env" <<EOF
AWS_ACCESS_KEY_ID=$id
AWS_SECRET_ACCESS_KEY=$secret
AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
AWS_DEFAULT_REGION=$REGION
GARAGE_BUCKET=$BUCKET
EOF
    chmod 600 "$DIR/s3.env"
    cat "$DIR/s3.env"
}

case $STEP in
    config)
        write_config
        ;;
    setup)
        assign_layout
        create_key_and_bucket
        ;;
    start)
        write_config
        nohup "$GARAGE" -c "$CONFIG" server >"$DIR/server.log" 2>&1 &
        echo $! >"$DIR/server.pid"
        assign_layout
        create_key_and_bucket
        echo "garage running (pid $(cat "$DIR/server.pid")), log $DIR/server.log; stop with: $0 stop $DIR" >&2
        ;;
    stop)
        if [ -f "$DIR/server.pid" ]; then
            kill "$(cat "$DIR/server.pid")" 2>/dev/null || true
            rm -f "$DIR/server.pid"
        fi
        ;;
    *)
        usage
        ;;
esac
