# PlasmaVMC: virtual machines and images as the control plane keeps them
# (records under vm/ and image/ in the KV; see photon_records::vm). Reached
# through an authenticated session (raft.capnp Session.vms, Session.images);
# every call acts in the caller's tenant and project and is checked against
# its roles: vm:Create, vm:List, vm:Get, vm:Start, vm:Stop, vm:Reboot,
# vm:Delete, vm:AttachVolume, vm:DetachVolume, vm:GetLogs, vm:Console, vm:Migrate on
# vm/<name>; image:Create, image:List, image:Get, image:Delete on
# image/<name>. Creating a VM also needs volume:Clone (from an image) or
# volume:Attach (of each volume it names).
@0xa4d1c29e7b3f5d61;

using E = import "error.capnp";

struct VmDisk {
  volume @0 :Text;
  readOnly @1 :Bool;
  owned @2 :Bool;           # made with the VM (its image's clone): removed with it
}

struct Vm {
  name @0 :Text;
  id @1 :UInt64;
  node @2 :UInt64;
  cpus @3 :UInt32;
  memoryMib @4 :UInt32;
  image @5 :Text;           # "" if made from volumes
  disks @6 :List(VmDisk);
  mac @7 :Text;
  power @8 :Text;           # what was asked: running | stopped
  restart @9 :Text;         # always | on-failure | never
  createdMs @10 :UInt64;
  # What the node's agent sees (state "unknown" when the VM is on another
  # node or the agent has not looked yet).
  state @11 :Text;          # running | paused | stopped | starting | stopping | failed | unknown
  stateDetail @12 :Text;    # why (the last exit, an error), "" if nothing to say
  accel @13 :Text;          # kvm | tcg, "" when not running
  pid @14 :UInt32;          # QEMU's process id, 0 when not running
  restarts @15 :UInt32;     # restarts the agent made per the restart policy
  userData @16 :Bool;       # carries user data or SSH keys (a cloud-init seed)
  address @17 :Text;        # its static address on the node's VM bridge, "" without one
  # The live migration under way ("to node 2: ..."), or why the last one
  # failed ("failed: ..."); "" when there is none.
  migration @18 :Text;
}

struct VmCreate {
  name @0 :Text;
  image @1 :Text;           # one of image and volume
  volume @2 :Text;          # an existing volume to boot from
  extraVolumes @3 :List(Text);
  cpus @4 :UInt32;
  memoryMib @5 :UInt32;
  userData @6 :Text;
  sshKeys @7 :List(Text);
  restart @8 :Text;         # "" = on-failure
  start @9 :Bool = true;    # false: created stopped
}

# Receives a VM's console output (the serial port).
interface ConsoleOutput {
  write @0 (data :Data) -> ();
  # The console went away (the VM stopped, the node stops); no more writes.
  closed @1 (reason :Text) -> ();
}

# Sends keystrokes to a VM's console; dropping it detaches.
interface ConsoleInput {
  write @0 (data :Data) -> (error :E.Error);
}

interface Vms {
  list @0 () -> (vms :List(Vm), error :E.Error);
  create @1 (vm :VmCreate) -> (vm :Vm, error :E.Error);
  info @2 (name :Text) -> (vm :Vm, error :E.Error);
  start @3 (name :Text) -> (vm :Vm, error :E.Error);
  # Asks the guest to power off (ACPI); the agent pulls the plug if it has
  # not within the stop timeout, or at once with force.
  stop @4 (name :Text, force :Bool) -> (vm :Vm, error :E.Error);
  reboot @5 (name :Text) -> (vm :Vm, error :E.Error);
  # Removes the VM and, unless keepVolumes, the volumes made with it.
  delete @6 (name :Text, keepVolumes :Bool) -> (error :E.Error);
  # The last (at most) tailBytes of the serial console's log.
  logs @7 (name :Text, tailBytes :UInt32) -> (data :Data, error :E.Error);
  # Attaches the caller to the serial console: output goes to `output`
  # (first the last few KiB of the log), keystrokes go through `input`.
  console @8 (name :Text, output :ConsoleOutput) -> (input :ConsoleInput, error :E.Error);
  # Adds or removes a disk; the agent of a running VM hot-plugs it (a
  # detach waits for the guest to release the device).
  attachVolume @9 (name :Text, volume :Text, readOnly :Bool) -> (vm :Vm, error :E.Error);
  detachVolume @10 (name :Text, volume :Text) -> (vm :Vm, error :E.Error);
  # Moves a running VM to node `toNode` (a compute node of the registry
  # that is up) while it runs: QEMU's live migration, the disks staying on
  # CoronaFS. Answers at once; `info` shows the progress, and the VM's
  # node changes when it completed.
  migrate @11 (name :Text, toNode :UInt64) -> (vm :Vm, error :E.Error);
}

struct ImagePart {
  volume @0 :Text;
  bytes @1 :UInt64;
  uri @2 :Text;             # create only: the nbd:// URI to write it through
}

struct Image {
  name @0 :Text;
  id @1 :UInt64;
  state @2 :Text;           # importing | ready
  sourceFormat @3 :Text;
  disk @4 :ImagePart;
  kernel @5 :ImagePart;     # volume "" when the image has none
  initrd @6 :ImagePart;
  cmdline @7 :Text;
  createdMs @8 :UInt64;
}

interface Images {
  list @0 () -> (images :List(Image), error :E.Error);
  # Starts an import: makes the image's volumes (disk, and kernel and
  # initrd for direct boot when their sizes are not 0) and returns attach
  # URIs to write them through (qemu-img convert -n ... nbd://...).
  create @1 (name :Text, diskBytes :UInt64, kernelBytes :UInt64, initrdBytes :UInt64,
             cmdline :Text, sourceFormat :Text) -> (image :Image, error :E.Error);
  # Ends an import: snapshots every part; VMs may start from it after.
  seal @2 (name :Text) -> (image :Image, error :E.Error);
  info @3 (name :Text) -> (image :Image, error :E.Error);
  # Removes the image and its volumes (VMs made from it keep their clones).
  delete @4 (name :Text) -> (error :E.Error);
}
