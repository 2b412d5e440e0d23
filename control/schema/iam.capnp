# The PhotonCloud IAM API: tenants, projects, principals (users and service
# accounts), roles, bindings, S3 access keys and token-signing keys. A caller
# reaches it through an authenticated session (raft.capnp `Node.authenticate`);
# every call acts in the caller's tenant and is checked against its roles.
@0xd2a1c4b6e8f00a13;

using E = import "error.capnp";

struct BindingInfo {
  principal @0 :Text;
  project @1 :Text;      # "*": every project, and tenant-level actions
  role @2 :Text;
}

struct Identity {
  tenant @0 :Text;
  principal @1 :Text;
  project @2 :Text;
  kind @3 :Text;         # user | service_account
  clusterAdmin @4 :Bool;
  tokenId @5 :Text;
  issuedAtMs @6 :UInt64;
  expiresAtMs @7 :UInt64;
  bindings @8 :List(BindingInfo);
}

struct PrincipalInfo {
  name @0 :Text;
  kind @1 :Text;
  clusterAdmin @2 :Bool;
  createdMs @3 :UInt64;
}

struct AccessKeyInfo {
  id @0 :Text;
  principal @1 :Text;
  project @2 :Text;
  createdMs @3 :UInt64;
}

struct RoleInfo {
  name @0 :Text;
  builtin @1 :Bool;
  statements @2 :Text;   # JSON list of {effect, actions, resources}
}

struct SigningKeyInfo {
  id @0 :Text;
  createdMs @1 :UInt64;
  verifyUntilMs @2 :UInt64;   # 0: the active key
}

interface Iam {
  whoami @0 () -> (identity :Identity, error :E.Error);
  # A new token for the same principal and project (the current one must be valid).
  refresh @1 (ttlSeconds :UInt32) -> (token :Text, expiresAtMs :UInt64, error :E.Error);
  # Revokes one token (your own, or any of your tenant's as its admin).
  revokeToken @2 (token :Text) -> (error :E.Error);
  # Refuses every token `principal` holds now ("" = yourself).
  signOut @3 (principal :Text) -> (error :E.Error);

  # Cluster admin only.
  createTenant @4 (name :Text, adminName :Text, adminPassword :Text) -> (error :E.Error);
  listTenants @5 () -> (tenants :List(Text), error :E.Error);
  rotateSigningKey @6 () -> (keyId :Text, error :E.Error);
  listSigningKeys @7 () -> (keys :List(SigningKeyInfo), error :E.Error);

  createProject @8 (name :Text) -> (error :E.Error);
  listProjects @9 () -> (projects :List(Text), error :E.Error);

  createUser @10 (name :Text, password :Text) -> (error :E.Error);
  # Your own password (name "" or yours), or anyone's as tenant admin.
  setPassword @11 (name :Text, password :Text) -> (error :E.Error);
  createServiceAccount @12 (name :Text) -> (secret :Text, error :E.Error);
  deletePrincipal @13 (name :Text) -> (error :E.Error);
  listPrincipals @14 () -> (principals :List(PrincipalInfo), error :E.Error);

  # S3 access keys act as `principal` ("" = yourself) in your token's project.
  createAccessKey @15 (principal :Text) -> (id :Text, secret :Text, error :E.Error);
  listAccessKeys @16 (principal :Text) -> (keys :List(AccessKeyInfo), error :E.Error);
  deleteAccessKey @17 (id :Text) -> (error :E.Error);

  putRole @18 (name :Text, statements :Text) -> (error :E.Error);
  deleteRole @19 (name :Text) -> (error :E.Error);
  listRoles @20 () -> (roles :List(RoleInfo), error :E.Error);
  bind @21 (binding :BindingInfo) -> (error :E.Error);
  unbind @22 (binding :BindingInfo) -> (error :E.Error);
  listBindings @23 (principal :Text) -> (bindings :List(BindingInfo), error :E.Error);
}
