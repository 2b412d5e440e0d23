# CoronaFS volumes as the control plane keeps them (records under volume/ in
# the KV). Reached through an authenticated session (raft.capnp
# Session.volumes); every call acts in the caller's tenant and project and is
# checked against its roles (volume:Create, volume:List, volume:Get,
# volume:Resize, volume:Snapshot, volume:Clone, volume:Delete, volume:Attach).
@0xe3c1a7b5d9f20468;

using E = import "error.capnp";

struct VolumeInfo {
  name @0 :Text;            # "vol" or, for a snapshot, "vol@snap"
  id @1 :UInt64;
  kind @2 :Text;            # volume | snapshot
  size @3 :UInt64;          # bytes
  blockSize @4 :UInt32;
  parent @5 :Text;          # snapshot a clone came from / volume a snapshot froze; "" if none
  tenant @6 :Text;
  project @7 :Text;
  node @8 :UInt64;
  shard @9 :UInt32;
  createdMs @10 :UInt64;
  allocatedBytes @11 :UInt64;   # bytes of data the volume's extents hold (valid when allocatedKnown)
  allocatedKnown @12 :Bool;     # false when the owner shard did not answer or the volume is on another node
}

interface Volumes {
  list @0 () -> (volumes :List(VolumeInfo), error :E.Error);
  create @1 (name :Text, size :UInt64, blockSize :UInt32) -> (volume :VolumeInfo, error :E.Error);
  info @2 (name :Text) -> (volume :VolumeInfo, error :E.Error);
  # Grows a volume (never shrinks); connected clients see the new size
  # when they reconnect.
  resize @3 (name :Text, size :UInt64) -> (volume :VolumeInfo, error :E.Error);
  # Freezes volume `name` as the read-only `name@snapshot`.
  snapshot @4 (name :Text, snapshot :Text) -> (volume :VolumeInfo, error :E.Error);
  # A new writable volume `name` sharing the extents of `snapshot` (vol@snap).
  cloneSnapshot @5 (snapshot :Text, name :Text) -> (volume :VolumeInfo, error :E.Error);
  delete @6 (name :Text) -> (error :E.Error);
  # An attach token for the volume, and the nbd:// URI that carries it.
  attach @7 (name :Text, ttlSeconds :UInt32) -> (uri :Text, token :Text, expiresAtMs :UInt64, error :E.Error);
}
