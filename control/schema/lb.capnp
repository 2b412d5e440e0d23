# FiberLB load balancers as the control plane keeps them (records under lb/
# in the KV; see fiberlb::spec). Reached through an authenticated session
# (raft.capnp Session.lb); every call acts in the caller's tenant and project
# and is checked against its roles: lb:ListVips on lb/vip; lb:CreateVip,
# lb:GetVip, lb:SetHealth, lb:DeleteVip and lb:ListBackends on lb/vip/<name>;
# lb:AddBackend, lb:SetWeight and lb:RemoveBackend on
# lb/vip/<vip>/backend/<name>; lb:GetStats on lb/stats.
@0xc320cbf6c3d5ce73;

using E = import "error.capnp";

# A health check, or (in setHealth) a change to one. Fields left unset ("",
# -1) keep the current value (setHealth) or take the default (createVip:
# tcp, the VIP's port, 1000 ms, 500 ms, rise 2, fall 2). Numbers are wider
# than their ranges so that every value a caller sends is checked, none is
# mistaken for "unset".
struct HealthCheck {
  kind @0 :Text;            # tcp | http
  httpPath @1 :Text;        # http only; "/" when an http check names none
  port @2 :Int32 = -1;      # 1-65535; 0: the VIP's own port
  intervalMs @3 :Int64 = -1;  # 100-60000
  timeoutMs @4 :Int64 = -1;   # 50 to intervalMs
  rise @5 :Int32 = -1;      # 1-10 passing checks turn a backend healthy
  fall @6 :Int32 = -1;      # 1-10 failing checks turn it unhealthy
}

struct Vip {
  name @0 :Text;
  address @1 :Text;         # 203.0.113.10 or 2001:db8::10
  port @2 :UInt16;
  protocol @3 :Text;        # tcp | udp
  health @4 :HealthCheck;   # as stored: every field set, port 0 = the VIP's
  tenant @5 :Text;
  project @6 :Text;
  createdMs @7 :UInt64;
  backendCount @8 :UInt32;
}

# A backend serves the VIP's own address and port on its loopback (direct
# server return over IP-in-IP), so it has an address and no port.
struct Backend {
  vip @0 :Text;
  name @1 :Text;
  address @2 :Text;
  weight @3 :UInt32;        # 0 (drained: keeps its flows, gets no new ones) to 65536
  tenant @4 :Text;
  project @5 :Text;
  createdMs @6 :UInt64;
}

interface Lb {
  listVips @0 () -> (vips :List(Vip), error :E.Error);
  # The address, port and protocol must be free in the whole cluster.
  createVip @1 (name :Text, address :Text, port :UInt16, protocol :Text, health :HealthCheck)
      -> (vip :Vip, error :E.Error);
  vipInfo @2 (name :Text) -> (vip :Vip, backends :List(Backend), error :E.Error);
  setHealth @3 (name :Text, health :HealthCheck) -> (vip :Vip, error :E.Error);
  # Refused while the VIP has backends.
  deleteVip @4 (name :Text) -> (error :E.Error);
  addBackend @5 (vip :Text, name :Text, address :Text, weight :UInt32 = 100) -> (backend :Backend, error :E.Error);
  listBackends @6 (vip :Text) -> (backends :List(Backend), error :E.Error);
  setWeight @7 (vip :Text, name :Text, weight :UInt32) -> (backend :Backend, error :E.Error);
  removeBackend @8 (vip :Text, name :Text) -> (error :E.Error);
  # The counters of this node's load balancer agent, only for the caller's
  # VIPs and backends (node-wide counters for cluster administrators only),
  # as the JSON of fiberlb::spec::StatsSnapshot. running = false (and
  # reason) when this node runs no agent.
  stats @9 () -> (running :Bool, reason :Text, node :UInt64, snapshotJson :Text, error :E.Error);
}
