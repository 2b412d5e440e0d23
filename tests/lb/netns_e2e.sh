#!/usr/bin/env bash
# FiberLB end to end, in network namespaces this script creates (root):
#
#   client 10.203.0.2 ─┐                     ┌─ b1 10.203.0.11 (VIP on lo, decap, HTTP)
#   lb     10.203.0.3 ─┼── br0 (switch ns) ──┼─ b2 10.203.0.12
#                      │                     └─ b3 10.203.0.13
#
# The client routes the VIP 10.203.100.1 via the LB. The LB runs `photon dev`
# with the XDP program attached in native mode to its veth (the switch-side
# peer carries an XDP_PASS program, as native XDP_TX on veth needs); it
# sends each flow IP-in-IP to a backend, which decapsulates in XDP and
# answers the client directly (DSR). Checks: new connections spread over
# all three; stopping b3's server makes the health check drop it within a
# few seconds; new connections then avoid it and none fails; keep-alive
# connections to b1/b2 keep working on the same backend; b3 returns when
# its server is back; counters in `photon ctl lb stats` and /metrics.
#
# Usage (root): PHOTON=target/release/photon WORK=$(mktemp -d) tests/lb/netns_e2e.sh
set -euo pipefail

PHOTON=$(realpath "${PHOTON:?path of the photon binary}")
WORK=$(realpath "${WORK:?scratch directory}")
HERE=$(cd "$(dirname "$0")" && pwd)
P="fl$$"
VIP=10.203.100.1
NS_SW=$P-sw NS_C=$P-c NS_LB=$P-lb
BACKENDS=(b1 b2 b3)
declare -A ADDR=([c]=10.203.0.2 [lb]=10.203.0.3 [b1]=10.203.0.11 [b2]=10.203.0.12 [b3]=10.203.0.13)

log() { printf '[%s] %s\n' "$(date +%T.%N | cut -c1-12)" "$*"; }
fail() { log "FAIL: $*"; exit 1; }

# Every process a namespace holds (ip netns exec may leave wrappers between
# our $! and the real process, e.g. pyenv shims).
ns_kill() { # namespace signal [pattern]
  local pid
  for pid in $(ip netns pids "$1" 2>/dev/null); do
    if [ -z "${3:-}" ] || grep -q -- "$3" "/proc/$pid/cmdline" 2>/dev/null; then
      kill "-$2" "$pid" 2>/dev/null
    fi
  done
}
cleanup() {
  set +e
  exec 3>&- 4<&-
  for ns in "$NS_SW" "$NS_C" "$NS_LB" "${BACKENDS[@]/#/$P-}"; do ns_kill "$ns" TERM; done
  sleep 0.5
  for ns in "$NS_SW" "$NS_C" "$NS_LB" "${BACKENDS[@]/#/$P-}"; do
    ns_kill "$ns" KILL
    ip netns del "$ns" 2>/dev/null
  done
  wait 2>/dev/null
}
trap cleanup EXIT

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Topology ----------------------------------------------------------------
for ns in "$NS_SW" "$NS_C" "$NS_LB" "${BACKENDS[@]/#/$P-}"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip -n "$NS_SW" link add br0 type bridge
ip -n "$NS_SW" link set br0 up
plug() { # host-name namespace
  local name=$1 ns=$2
  ip link add "$P${name}a" type veth peer name "$P${name}b"
  ip link set "$P${name}a" netns "$ns"
  ip -n "$ns" link set "$P${name}a" name eth0
  ip link set "$P${name}b" netns "$NS_SW"
  ip -n "$NS_SW" link set "$P${name}b" name "p-$name"
  ip -n "$NS_SW" link set "p-$name" master br0 up
  ip -n "$ns" addr add "${ADDR[$name]}/24" dev eth0
  ip -n "$ns" link set eth0 up
}
plug c "$NS_C"
plug lb "$NS_LB"
for b in "${BACKENDS[@]}"; do plug "$b" "$P-$b"; done
ip -n "$NS_C" route add "$VIP/32" via "${ADDR[lb]}"
# The LB's FIB lookups (next hop toward the backends) need forwarding on.
in_ns "$NS_LB" sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1
# veth hands over TCP checksums unfinished (offload); the LB forwards frames
# as they are, so the client must finish its own (a real NIC's frames do).
in_ns "$NS_C" ethtool -K eth0 tx off >/dev/null

# Backends: VIP on loopback, decapsulation on eth0, an HTTP server.
start_http() {
  local b=$1
  in_ns "$P-$b" python3 "$HERE/backend_http.py" --name "$b" --port 80 >"$WORK/$b-http.log" 2>&1 &
}
for b in "${BACKENDS[@]}"; do
  ip -n "$P-$b" addr add "$VIP/32" dev lo
  in_ns "$P-$b" "$PHOTON" lb decap --interface eth0 >"$WORK/$b-decap.log" 2>&1 &
  start_http "$b"
done
in_ns "$NS_SW" "$PHOTON" lb xdp-pass --interface p-lb >"$WORK/sw-pass.log" 2>&1 &

# The load balancer node.
DATA=$WORK/lb-data
CFG=$WORK/lb-config
in_ns "$NS_LB" "$PHOTON" dev --cores 1 --data-dir "$DATA" \
  --admin 127.0.0.1:0 --control 127.0.0.1:0 --s3 127.0.0.1:0 --nbd 127.0.0.1:0 --nightlight 127.0.0.1:0 \
  --set s3.segment_mib=16 --set lb.interface=eth0 --set lb.xdp_mode=native \
  >"$WORK/lb-node.log" 2>&1 &
for _ in $(seq 1 300); do
  [ -f "$DATA/control/admin.credentials" ] && [ -f "$DATA/endpoints.json" ] && break
  sleep 0.1
done
[ -f "$DATA/control/admin.credentials" ] || fail "photon dev did not start: $(tail -20 "$WORK/lb-node.log")"
ctl() { in_ns "$NS_LB" env PHOTON_CONFIG_DIR="$CFG" "$PHOTON" ctl --data-dir "$DATA" "$@"; }
ctl login >/dev/null
log "photon dev up in $NS_LB"

ctl lb vip create web --address "$VIP" --port 80 --check http --http-path / \
  --interval-ms 300 --timeout-ms 250 --rise 2 --fall 2 >/dev/null
for b in "${BACKENDS[@]}"; do
  ctl lb backend add web "$b" --address "${ADDR[$b]}" >/dev/null
done

# jq-free JSON look-ups.
stats() { # the node's snapshot, as JSON
  ctl --json lb stats | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["snapshot"]))'
}
healthy_set() { # prints the healthy backends, sorted, comma-separated
  stats | python3 -c 'import json,sys; s=json.load(sys.stdin); print(",".join(sorted(b["name"] for b in s["backends"] if b["healthy"])))'
}
wait_healthy() { # expected-set seconds
  local want=$1 limit=$2 start now got
  start=$(date +%s.%N)
  while :; do
    got=$(healthy_set 2>/dev/null || true)
    now=$(date +%s.%N)
    if [ "$got" = "$want" ]; then
      python3 -c "print(f'{$now - $start:.2f}')"
      return 0
    fi
    python3 -c "import sys; sys.exit(0 if $now - $start < $limit else 1)" \
      || fail "healthy backends are [$got], expected [$want] after ${limit}s"
    sleep 0.1
  done
}
took=$(wait_healthy b1,b2,b3 20)
log "all three backends healthy after ${took}s"
attached=$(stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["attached"])')
[[ $attached == "xdp native on eth0"* ]] || fail "not attached: $attached"
log "attached: $attached"
# Debugging by hand: FL_PAUSE=600 keeps the topology up this long here.
[ -n "${FL_PAUSE:-}" ] && { log "paused (${FL_PAUSE}s): namespaces $P-*"; sleep "$FL_PAUSE"; }

# The client, driven command by command through two FIFOs.
mkfifo "$WORK/to-client" "$WORK/from-client"
ip netns exec "$NS_C" python3 -u "$HERE/client.py" "$VIP" 80 <"$WORK/to-client" >"$WORK/from-client" &
exec 3>"$WORK/to-client" 4<"$WORK/from-client"
ask() { echo "$1" >&3; local reply; read -r -t 120 reply <&4 || fail "client did not answer '$1'"; echo "$reply"; }
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($2)" "$1"; }

reply=$(ask "spread 90")
log "spread 90: $reply"
[ "$(field "$reply" 'len(d["errors"])')" = 0 ] || fail "requests failed: $reply"
for b in "${BACKENDS[@]}"; do
  n=$(field "$reply" "d['counts'].get('$b', 0)")
  [ "$n" -ge 10 ] || fail "$b got $n of 90 new connections: $reply"
done

reply=$(ask "open 12")
log "open 12 keep-alive: $reply"
before=$(field "$reply" '",".join(d["backends"])')
case $before in *error*) fail "keep-alive requests failed: $reply";; esac

# b3's server stops: the health check must drop it within a few seconds.
ns_kill "$P-b3" TERM backend_http
took=$(wait_healthy b1,b2 10)
log "b3 dropped ${took}s after its server stopped"

reply=$(ask "spread 60")
log "spread 60 without b3: $reply"
[ "$(field "$reply" 'len(d["errors"])')" = 0 ] || fail "requests failed while b3 was out: $reply"
[ "$(field "$reply" "d['counts'].get('b3', 0)")" = 0 ] || fail "b3 still got new connections: $reply"

reply=$(ask "reuse")
log "reuse keep-alive: $reply"
after=$(field "$reply" '",".join(d["backends"])')
python3 - "$before" "$after" <<'EOF' || fail "established flows to b1/b2 were disturbed"
import sys
before, after = sys.argv[1].split(","), sys.argv[2].split(",")
bad = [(b, a) for b, a in zip(before, after) if b in ("b1", "b2") and a != b]
kept = sum(1 for b in before if b in ("b1", "b2"))
print(f"{kept} connections on b1/b2 kept their backend; changed: {bad}")
sys.exit(1 if bad or kept == 0 else 0)
EOF

# b3 comes back.
start_http b3
took=$(wait_healthy b1,b2,b3 10)
log "b3 healthy again after ${took}s"
reply=$(ask "spread 60")
log "spread 60 with b3 back: $reply"
[ "$(field "$reply" 'len(d["errors"])')" = 0 ] || fail "requests failed: $reply"
[ "$(field "$reply" "d['counts'].get('b3', 0)")" -ge 5 ] || fail "b3 gets no new connections: $reply"

# Counters: the API and /metrics.
sleep 1.2
s=$(stats)
log "lb stats: $s"
python3 - "$s" <<'EOF' || fail "counters do not add up"
import json, sys
s = json.loads(sys.argv[1])
vip = next(v for v in s["vips"] if v["name"] == "web")
assert vip["new_flows"] >= 222, vip  # 90 + 12 + 60 + 60 connections
assert vip["packets"] >= 3 * vip["new_flows"], vip
per = {b["name"]: b for b in s["backends"]}
assert all(per[b]["packets"] > 0 and per[b]["new_flows"] > 0 for b in ("b1", "b2", "b3")), per
assert sum(b["new_flows"] for b in per.values()) >= vip["new_flows"], (vip, per)
print("vip", vip["packets"], "packets,", vip["new_flows"], "flows")
EOF
admin=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoints"]["admin"])' "$DATA/endpoints.json")
metrics=$(in_ns "$NS_LB" curl -sf "http://$admin/metrics")
grep -q '^photon_lb_attached 1$' <<<"$metrics" || fail "/metrics: photon_lb_attached is not 1"
grep -q '^photon_lb_vip_new_flows_total{.*vip="web"} [1-9]' <<<"$metrics" || fail "/metrics lacks the VIP's flows"
grep -q '^photon_lb_backend_healthy{.*backend="b3"} 1$' <<<"$metrics" || fail "/metrics lacks b3's health"
log "/metrics has the VIP and backend counters"
log "PASS"
