# Raft between control-plane nodes, and cluster membership. Log entries travel
# in the same rkyv record encoding the log store writes to disk.
@0x8a6e691f2703a405;

using E = import "error.capnp";

struct LogId {
  term @0 :UInt64;
  nodeId @1 :UInt64;
  index @2 :UInt64;
}

struct Vote {
  term @0 :UInt64;
  nodeId @1 :UInt64;
  committed @2 :Bool;
}

struct OptionalLogId {
  union {
    none @0 :Void;
    some @1 :LogId;
  }
}

interface Raft {
  appendEntries @0 (vote :Vote, prevLogId :OptionalLogId, entries :List(Data), leaderCommit :OptionalLogId)
      -> (result :AppendResult);
  vote @1 (vote :Vote, lastLogId :OptionalLogId)
      -> (vote :Vote, voteGranted :Bool, lastLogId :OptionalLogId);
  installSnapshot @2 (vote :Vote, meta :Data, offset :UInt64, data :Data, done :Bool)
      -> (vote :Vote);
  # A follower's own write (the node registry's heartbeat, a VM agent's
  # report) proposed by the leader: `txn` is a KV txn in the log's rkyv
  # encoding. `error` is "" when it committed; `retry` says the same txn
  # may be sent again (this node does not lead, or is busy).
  propose @3 (txn :Data) -> (succeeded :Bool, revision :Int64, error :Text, retry :Bool);
}

struct AppendResult {
  union {
    success @0 :Void;
    partialSuccess @1 :OptionalLogId;
    conflict @2 :Void;
    higherVote @3 :Vote;
  }
}

struct Member {
  nodeId @0 :UInt64;
  address @1 :Text;
  voter @2 :Bool;
  # Only in status replies:
  matched @3 :OptionalLogId;
}

struct ClusterStatus {
  nodeId @0 :UInt64;
  term @1 :UInt64;
  leaderId @2 :UInt64;        # 0: no known leader
  state @3 :Text;             # Leader, Follower, Candidate, Learner, Shutdown
  lastLogIndex @4 :UInt64;
  appliedIndex @5 :UInt64;
  committedIndex @6 :UInt64;
  members @7 :List(Member);
}

# One node of the registry (node/<id> in the KV), as it last described
# itself, and its state judged from its last heartbeat.
struct NodeInfo {
  id @0 :UInt64;
  name @1 :Text;
  roles @2 :List(Text);
  failureDomain @3 :Text;
  endpoints @4 :List(NodeEndpoint);
  host @5 :Text;
  cpus @6 :UInt32;
  memoryMib @7 :UInt64;
  diskFree @8 :UInt64;
  diskTotal @9 :UInt64;
  version @10 :Text;
  startedMs @11 :UInt64;
  heartbeatMs @12 :UInt64;
  state @13 :Text;            # up | suspect | down
}

struct NodeEndpoint {
  name @0 :Text;              # control | nbd | s3 | admin
  address @1 :Text;
}

interface Cluster {
  status @0 () -> (status :ClusterStatus, error :E.Error);
  # The node registry: every node that registered, by id.
  nodes @4 () -> (nodes :List(NodeInfo), error :E.Error);
  addLearner @1 (nodeId :UInt64, address :Text) -> (error :E.Error);
  promote @2 (nodeId :UInt64) -> (error :E.Error);
  remove @3 (nodeId :UInt64) -> (error :E.Error);
}

# What an authenticated caller gets: capabilities scoped to its token's
# tenant and project, each call checked against its roles. The getters
# (iam, kv, ...) never fail, so calls pipeline on them without a round trip;
# every call on what they return checks the token again and answers a bad
# one with an `unauthenticated` error.
interface Session {
  whoami @0 () -> (identity :import "iam.capnp".Identity, error :E.Error);
  iam @1 () -> (iam :import "iam.capnp".Iam);
  kv @2 () -> (kv :import "kv.capnp".Kv);
  cluster @3 () -> (cluster :Cluster);
  buckets @4 () -> (buckets :import "buckets.capnp".Buckets);
  volumes @5 () -> (volumes :import "volumes.capnp".Volumes);
  lb @6 () -> (lb :import "lb.capnp".Lb);
  vms @7 () -> (vms :import "vm.capnp".Vms);
  images @8 () -> (images :import "vm.capnp".Images);
}

# The bootstrap capability of every node. Nothing is reachable without
# credentials: clients log in or present a token; peers prove they hold the
# cluster key.
interface Node {
  login @0 (tenant :Text, principal :Text, secret :Text, project :Text, ttlSeconds :UInt32)
      -> (token :Text, expiresAtMs :UInt64, error :E.Error);
  # The session is returned even for a bad token (its calls then answer
  # `unauthenticated`), so a client may pipeline on it; `error` says at once.
  authenticate @1 (token :Text) -> (session :Session, error :E.Error);
  # Node to node (Raft); fails with a Cap'n Proto exception.
  peer @2 (proof :Data) -> (raft :Raft);
}
