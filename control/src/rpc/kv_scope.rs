//! Tenant scoping of the KV API. A tenant's caller sees a key space of its
//! own: every key it names is stored under `t/<tenant>/<project>/`, and the
//! prefix is taken off every key it gets back, so it can neither name nor
//! see another tenant's keys. The cluster administrator sees the whole key
//! space, except that `iam/` (the IAM records) is written only through the
//! IAM API.

use crate::api_error::{ApiError, Code, Reply};
use photon_iam::Identity;

use crate::kv::{
    prefix_end, Compare, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};

/// Keys only the IAM service writes.
pub const RESERVED_PREFIX: &[u8] = photon_iam::model::PREFIX.as_bytes();

/// How one caller's keys map onto the store's.
#[derive(Debug, Clone)]
pub struct KeyScope {
    /// Empty: the whole key space (cluster administrator).
    prefix: Vec<u8>,
}

impl KeyScope {
    pub fn for_identity(identity: &Identity) -> Self {
        if identity.cluster_admin {
            Self { prefix: Vec::new() }
        } else {
            Self::tenant(identity.tenant(), identity.project())
        }
    }

    pub fn tenant(tenant: &str, project: &str) -> Self {
        Self {
            prefix: format!("t/{tenant}/{project}/").into_bytes(),
        }
    }

    pub fn is_whole(&self) -> bool {
        self.prefix.is_empty()
    }

    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    pub fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + key.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(key);
        out
    }

    /// Maps an etcd-style range (empty end: one key; `[0]`: from `key` on).
    pub fn range(&self, key: &[u8], range_end: &[u8]) -> (Vec<u8>, Vec<u8>) {
        if self.is_whole() {
            return (key.to_vec(), range_end.to_vec());
        }
        let end = match range_end {
            [] => Vec::new(),
            [0] => prefix_end(&self.prefix),
            end => self.key(end),
        };
        (self.key(key), end)
    }

    /// The caller's name for a stored key.
    pub fn strip<'a>(&self, key: &'a [u8]) -> &'a [u8] {
        key.strip_prefix(self.prefix.as_slice()).unwrap_or(key)
    }

    pub fn strip_kv(&self, kv: &mut KeyValue) {
        if !self.is_whole() {
            kv.key = self.strip(&kv.key).to_vec();
        }
    }

    /// Refuses a write into the reserved `iam/` space (only reachable by
    /// the cluster administrator, whose scope is the whole key space).
    pub fn check_writable(&self, key: &[u8], range_end: &[u8]) -> Reply<()> {
        if !self.is_whole() {
            return Ok(());
        }
        let touches = key.starts_with(RESERVED_PREFIX)
            || (!range_end.is_empty()
                && key < prefix_end(RESERVED_PREFIX).as_slice()
                && (range_end == [0] || range_end > RESERVED_PREFIX));
        if touches {
            return Err(ApiError::new(
                Code::InvalidArgument,
                "invalid argument: keys under iam/ are written only through the IAM API",
            ));
        }
        Ok(())
    }

    pub fn map_range(&self, mut r: RangeRequest) -> RangeRequest {
        (r.key, r.range_end) = self.range(&r.key, &r.range_end);
        r
    }

    /// A tenant's empty key would name its own prefix: refused like the
    /// store refuses an empty key.
    fn check_key(&self, key: &[u8]) -> Reply<()> {
        if key.is_empty() && !self.is_whole() {
            return Err(ApiError::new(
                Code::InvalidArgument,
                "invalid argument: key is empty; every request needs a non-empty key",
            ));
        }
        Ok(())
    }

    pub fn map_put(&self, mut p: PutRequest) -> Reply<PutRequest> {
        self.check_key(&p.key)?;
        p.key = self.key(&p.key);
        self.check_writable(&p.key, &[])?;
        Ok(p)
    }

    pub fn map_delete(&self, mut d: DeleteRangeRequest) -> Reply<DeleteRangeRequest> {
        if d.range_end.is_empty() {
            self.check_key(&d.key)?;
        }
        (d.key, d.range_end) = self.range(&d.key, &d.range_end);
        self.check_writable(&d.key, &d.range_end)?;
        Ok(d)
    }

    pub fn map_txn(&self, txn: TxnRequest) -> Reply<TxnRequest> {
        let compare = txn
            .compare
            .into_iter()
            .map(|mut c: Compare| {
                (c.key, c.range_end) = self.range(&c.key, &c.range_end);
                c
            })
            .collect();
        let ops = |ops: Vec<RequestOp>| -> Reply<Vec<RequestOp>> {
            ops.into_iter()
                .map(|op| {
                    Ok(match op {
                        RequestOp::Range(r) => RequestOp::Range(self.map_range(r)),
                        RequestOp::Put(p) => RequestOp::Put(self.map_put(p)?),
                        RequestOp::DeleteRange(d) => RequestOp::DeleteRange(self.map_delete(d)?),
                        RequestOp::Txn(t) => RequestOp::Txn(self.map_txn(t)?),
                    })
                })
                .collect()
        };
        Ok(TxnRequest {
            compare,
            success: ops(txn.success)?,
            failure: ops(txn.failure)?,
        })
    }
}

/// The IAM resource name of a key as its caller names it.
pub fn resource(key: &[u8]) -> String {
    format!("kv/{}", String::from_utf8_lossy(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ranges_stay_inside_the_prefix() {
        let scope = KeyScope::tenant("acme", "web");
        assert_eq!(scope.key(b"a"), b"t/acme/web/a");
        assert_eq!(scope.range(b"a", b""), (b"t/acme/web/a".to_vec(), vec![]));
        // "Every key from here on" ends at the prefix's end, not the store's.
        assert_eq!(
            scope.range(b"", &[0]),
            (b"t/acme/web/".to_vec(), b"t/acme/web0".to_vec())
        );
        assert_eq!(
            scope.range(b"a", b"b"),
            (b"t/acme/web/a".to_vec(), b"t/acme/web/b".to_vec())
        );
        assert_eq!(scope.strip(b"t/acme/web/a"), b"a");
        // Tenants can never name iam/ at all.
        assert!(scope.check_writable(&scope.key(b"iam/x"), &[]).is_ok());
    }

    #[test]
    fn the_whole_scope_may_not_write_iam_records() {
        let admin = KeyScope { prefix: vec![] };
        assert!(admin.check_writable(b"iam/tenant/x", &[]).is_err());
        assert!(admin.check_writable(b"a", &[0]).is_err());
        assert!(admin.check_writable(b"", b"j").is_err());
        assert!(admin.check_writable(b"a", b"b").is_ok());
        assert!(admin.check_writable(b"iam0", &[0]).is_ok());
        assert!(admin.check_writable(b"app/x", &[]).is_ok());
    }
}
