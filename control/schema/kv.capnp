# The PhotonCloud control-plane KV API (chainfire + flaredb): an etcd-like
# key-value store with revisions, transactions, leases and watches, replicated
# by Raft. This file is the API contract; `photon ctl` and every service use it.
@0xb85657a65aa4a623;

using E = import "error.capnp";

struct KeyValue {
  key @0 :Data;
  value @1 :Data;
  createRevision @2 :Int64;
  modRevision @3 :Int64;
  version @4 :Int64;
  lease @5 :Int64;
}

# A key range in etcd style: empty `rangeEnd` is the single key `key`;
# `rangeEnd` = [0] is every key >= `key`; otherwise [key, rangeEnd).
struct RangeRequest {
  key @0 :Data;
  rangeEnd @1 :Data;
  limit @2 :UInt64;          # 0: no limit
  keysOnly @3 :Bool;
  countOnly @4 :Bool;
  revision @5 :Int64;        # 0: current
  serializable @6 :Bool;     # false (default): linearizable through the leader
}

struct RangeResponse {
  kvs @0 :List(KeyValue);
  count @1 :UInt64;
  more @2 :Bool;
  revision @3 :Int64;
}

struct PutRequest {
  key @0 :Data;
  value @1 :Data;
  lease @2 :Int64;
  prevKv @3 :Bool;
  ignoreValue @4 :Bool;
  ignoreLease @5 :Bool;
}

struct PutResponse {
  revision @0 :Int64;
  prevKv @1 :KeyValue;
  hasPrevKv @2 :Bool;
}

struct DeleteRangeRequest {
  key @0 :Data;
  rangeEnd @1 :Data;
  prevKv @2 :Bool;
}

struct DeleteRangeResponse {
  revision @0 :Int64;
  deleted @1 :UInt64;
  prevKvs @2 :List(KeyValue);
}

struct Compare {
  key @0 :Data;
  rangeEnd @1 :Data;
  result @2 :CompareResult;
  target :union {
    value @3 :Data;
    version @4 :Int64;
    createRevision @5 :Int64;
    modRevision @6 :Int64;
    lease @7 :Int64;
  }
}

enum CompareResult {
  equal @0;
  notEqual @1;
  greater @2;
  less @3;
}

struct RequestOp {
  union {
    range @0 :RangeRequest;
    put @1 :PutRequest;
    deleteRange @2 :DeleteRangeRequest;
    txn @3 :TxnRequest;
  }
}

struct ResponseOp {
  union {
    range @0 :RangeResponse;
    put @1 :PutResponse;
    deleteRange @2 :DeleteRangeResponse;
    txn @3 :TxnResponse;
  }
}

struct TxnRequest {
  compare @0 :List(Compare);
  success @1 :List(RequestOp);
  failure @2 :List(RequestOp);
}

struct TxnResponse {
  succeeded @0 :Bool;
  responses @1 :List(ResponseOp);
  revision @2 :Int64;
}

struct Event {
  kind @0 :Kind;
  kv @1 :KeyValue;
  prevKv @2 :KeyValue;
  hasPrevKv @3 :Bool;
  enum Kind {
    put @0;
    delete @1;
  }
}

# Receives the events of one watch, in revision order, each exactly once.
interface Watcher {
  events @0 (events :List(Event), revision :Int64) -> stream;
  # The watch ended: `reason` says why (e.g. "compacted: revision 5 < 9").
  cancelled @1 (reason :Text);
}

# Dropping the handle (or calling cancel) stops the watch.
interface WatchHandle {
  cancel @0 ();
}

interface Kv {
  range @0 (request :RangeRequest) -> (response :RangeResponse, error :E.Error);
  put @1 (request :PutRequest) -> (response :PutResponse, error :E.Error);
  deleteRange @2 (request :DeleteRangeRequest) -> (response :DeleteRangeResponse, error :E.Error);
  txn @3 (request :TxnRequest) -> (response :TxnResponse, error :E.Error);
  compact @4 (revision :Int64) -> (revision :Int64, error :E.Error);

  leaseGrant @5 (id :Int64, ttlMs :UInt64) -> (id :Int64, ttlMs :UInt64, error :E.Error);
  leaseRevoke @6 (id :Int64) -> (revision :Int64, error :E.Error);
  leaseKeepAlive @7 (id :Int64) -> (ttlMs :UInt64, error :E.Error);
  leaseTimeToLive @8 (id :Int64, keys :Bool) -> (grantedTtlMs :UInt64, remainingMs :UInt64, keys :List(Data), error :E.Error);

  # Watch a key or range from `startRevision` (0: from now on).
  watch @9 (key :Data, rangeEnd :Data, startRevision :Int64, prevKv :Bool, watcher :Watcher)
        -> (handle :WatchHandle, revision :Int64, error :E.Error);
}
