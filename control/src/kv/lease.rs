//! Leases: grant, revoke, keep-alive, time-to-live and the expiry order.
//!
//! Deadlines are `now_ms + ttl_ms` in the leader's clock as stamped on the
//! log entries. A lease whose deadline is at or before `now_ms` has expired:
//! it can no longer be kept alive, and [`KvStore::expired_leases`] lists it
//! until the leader's revocation goes through the log. Expiry itself never
//! changes the state, so replicas cannot diverge over clock differences.

use std::collections::BTreeSet;

use super::error::KvError;
use super::limits::{LEASES_MAX, LEASE_TTL_MS_MAX};
use super::store::{KvStore, Lease, Writer};
use super::types::{
    Event, LeaseGrantResponse, LeaseId, LeaseKeepAliveResponse, LeaseRevokeResponse,
    LeaseTimeToLiveResponse, NO_LEASE,
};

impl KvStore {
    /// Grants a lease of `ttl_ms`, expiring at `now_ms + ttl_ms` unless kept
    /// alive. `id` 0 picks the lowest free id from a counter that only moves
    /// forward, so ids are not reused soon after a revocation.
    pub fn lease_grant(
        &mut self,
        id: LeaseId,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<LeaseGrantResponse, KvError> {
        if id < 0 {
            return Err(KvError::NegativeLeaseId { id });
        }
        if ttl_ms == 0 || ttl_ms > LEASE_TTL_MS_MAX {
            return Err(KvError::InvalidLeaseTtl {
                ttl_ms,
                max: LEASE_TTL_MS_MAX,
            });
        }
        if self.state.leases.len() >= LEASES_MAX {
            return Err(KvError::TooManyLeases {
                leases: self.state.leases.len(),
            });
        }
        let id = if id == NO_LEASE {
            let picked = self.free_lease_id();
            self.state.next_lease_id = picked.checked_add(1).unwrap_or(1);
            picked
        } else if self.state.leases.contains_key(&id) {
            return Err(KvError::LeaseExists { id });
        } else {
            id
        };
        let deadline_ms = now_ms.saturating_add(ttl_ms);
        self.state.leases.insert(
            id,
            Lease {
                ttl_ms,
                deadline_ms,
            },
        );
        self.indexes.lease_deadlines.insert((deadline_ms, id));
        self.indexes.lease_keys.insert(id, BTreeSet::new());
        Ok(LeaseGrantResponse { id, ttl_ms })
    }

    /// The lowest free id at or after the counter, wrapping to 1. There is
    /// always one: at most [`LEASES_MAX`] ids are taken.
    fn free_lease_id(&self) -> LeaseId {
        let first_free_from = |start: LeaseId| {
            let mut candidate = start;
            for &taken in self.state.leases.range(start..).map(|(id, _)| id) {
                if taken != candidate {
                    break;
                }
                candidate = candidate.checked_add(1)?;
            }
            Some(candidate)
        };
        first_free_from(self.state.next_lease_id)
            .or_else(|| first_free_from(1))
            .unwrap_or(1)
    }

    /// Revokes a lease, deleting every attached key at one new revision (no
    /// new revision if none is attached).
    pub fn lease_revoke(
        &mut self,
        id: LeaseId,
    ) -> Result<(LeaseRevokeResponse, Vec<Event>), KvError> {
        let Some(lease) = self.state.leases.get(&id) else {
            return Err(KvError::LeaseNotFound { id });
        };
        let deadline = (lease.deadline_ms, id);
        let keys = self.indexes.lease_keys.remove(&id).unwrap_or_default();
        self.state.leases.remove(&id);
        self.indexes.lease_deadlines.remove(&deadline);
        let mut writer = Writer::new(self);
        for key in keys {
            if let Some(kv) = writer.store.live_at(&key, writer.revision) {
                writer.delete(kv);
            }
        }
        let (revision, events) = writer.finish();
        Ok((LeaseRevokeResponse { revision }, events))
    }

    /// Renews a lease: its deadline becomes `now_ms` plus its TTL.
    pub fn lease_keep_alive(
        &mut self,
        id: LeaseId,
        now_ms: u64,
    ) -> Result<LeaseKeepAliveResponse, KvError> {
        let Some(lease) = self.state.leases.get_mut(&id) else {
            return Err(KvError::LeaseNotFound { id });
        };
        if lease.deadline_ms <= now_ms {
            return Err(KvError::LeaseExpired { id });
        }
        let old = (lease.deadline_ms, id);
        lease.deadline_ms = now_ms.saturating_add(lease.ttl_ms);
        let ttl_ms = lease.ttl_ms;
        let new = (lease.deadline_ms, id);
        self.indexes.lease_deadlines.remove(&old);
        self.indexes.lease_deadlines.insert(new);
        Ok(LeaseKeepAliveResponse { id, ttl_ms })
    }

    /// A lease's granted TTL, remaining time and, if `keys`, attached keys.
    pub fn lease_time_to_live(
        &self,
        id: LeaseId,
        now_ms: u64,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, KvError> {
        let Some(lease) = self.state.leases.get(&id) else {
            return Err(KvError::LeaseNotFound { id });
        };
        let keys = match self.indexes.lease_keys.get(&id) {
            Some(attached) if keys => attached.iter().cloned().collect(),
            _ => Vec::new(),
        };
        Ok(LeaseTimeToLiveResponse {
            id,
            granted_ttl_ms: lease.ttl_ms,
            remaining_ms: lease.deadline_ms.saturating_sub(now_ms),
            keys,
        })
    }

    /// Every lease id, ascending.
    pub fn lease_ids(&self) -> Vec<LeaseId> {
        self.state.leases.keys().copied().collect()
    }

    /// Leases whose deadline is at or before `now_ms`, by deadline and then
    /// id, for the leader to revoke through the log.
    pub fn expired_leases(&self, now_ms: u64) -> Vec<LeaseId> {
        self.indexes
            .lease_deadlines
            .iter()
            .take_while(|(deadline_ms, _)| *deadline_ms <= now_ms)
            .map(|&(_, id)| id)
            .collect()
    }
}
