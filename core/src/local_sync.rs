//! Single-threaded async primitives for one shard: a broadcast signal, an
//! async mutex and per-key locks (used by the object and volume stores).
//! `!Send` by design (a store lives on one glommio executor), so
//! `Cell`/`RefCell` suffice.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Wakes every listener that started listening before `notify_all`.
/// Listeners re-check their condition after waking (spurious wakes are fine).
#[derive(Default)]
pub struct Signal {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Signal {
    /// Wakes all current listeners.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    /// A future that completes at the next `notify_all`. Create it before
    /// giving up control so that no notification is missed.
    pub fn listen(&self) -> Listen<'_> {
        Listen {
            signal: self,
            generation: self.generation.get(),
        }
    }
}

/// See [`Signal::listen`].
pub struct Listen<'a> {
    signal: &'a Signal,
    generation: u64,
}

impl Future for Listen<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut wakers = self.signal.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// An async mutex without data (guards a section of async code).
#[derive(Default)]
pub struct AsyncMutex {
    locked: Cell<bool>,
    released: Signal,
}

/// Holds an [`AsyncMutex`] until dropped.
pub struct AsyncMutexGuard<'a> {
    mutex: &'a AsyncMutex,
}

impl AsyncMutex {
    pub async fn lock(&self) -> AsyncMutexGuard<'_> {
        loop {
            if !self.locked.get() {
                self.locked.set(true);
                return AsyncMutexGuard { mutex: self };
            }
            self.released.listen().await;
        }
    }
}

impl Drop for AsyncMutexGuard<'_> {
    fn drop(&mut self) {
        self.mutex.locked.set(false);
        self.mutex.released.notify_all();
    }
}

#[derive(Default)]
struct KeySlot {
    locked: Cell<bool>,
    waiters: Cell<u32>,
    released: Signal,
}

type SlotMap<K> = Rc<RefCell<HashMap<K, Rc<KeySlot>>>>;

/// One async lock per key, created on demand and dropped when nobody holds
/// or waits for it, so the map only holds keys with writes in progress.
pub struct KeyLocks<K: Eq + Hash + Clone> {
    slots: SlotMap<K>,
}

impl<K: Eq + Hash + Clone> Default for KeyLocks<K> {
    fn default() -> Self {
        Self {
            slots: Rc::default(),
        }
    }
}

/// Holds the lock of one key until dropped. `'static`, so it can move into
/// the task that finishes a write.
pub struct KeyGuard<K: Eq + Hash + Clone> {
    slots: SlotMap<K>,
    slot: Rc<KeySlot>,
    key: K,
}

impl<K: Eq + Hash + Clone> KeyLocks<K> {
    /// Waits until `key` is free and takes it.
    pub async fn lock(&self, key: K) -> KeyGuard<K> {
        let slot = self
            .slots
            .borrow_mut()
            .entry(key.clone())
            .or_default()
            .clone();
        while slot.locked.get() {
            // The waiter count keeps the slot in the map while we wait.
            let mut waiting = Waiting {
                locks: self,
                key: &key,
                slot: &slot,
                woke: false,
            };
            slot.waiters.set(slot.waiters.get() + 1);
            slot.released.listen().await;
            waiting.woke = true;
        }
        slot.locked.set(true);
        KeyGuard {
            slots: self.slots.clone(),
            slot,
            key,
        }
    }

    /// Keys locked or waited for.
    pub fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    /// Whether nobody holds or waits for any key.
    pub fn is_empty(&self) -> bool {
        self.slots.borrow().is_empty()
    }

    /// Whether `key` is held right now. A waiter that was woken by a
    /// release but has not run yet does not hold it: counting it made a
    /// writer that re-checks in a loop (the volume store's copy-on-write)
    /// spin on a lock it could take at once, never yielding to the waiter,
    /// and starve its shard.
    pub fn is_locked(&self, key: &K) -> bool {
        self.slots.borrow().get(key).is_some_and(|s| s.locked.get())
    }
}

/// Counts one waiter of a slot; if the waiting future is dropped (cancelled)
/// and it was the last user of the slot, removes the slot from the map.
struct Waiting<'a, K: Eq + Hash + Clone> {
    locks: &'a KeyLocks<K>,
    key: &'a K,
    slot: &'a Rc<KeySlot>,
    woke: bool,
}

impl<K: Eq + Hash + Clone> Drop for Waiting<'_, K> {
    fn drop(&mut self) {
        self.slot.waiters.set(self.slot.waiters.get() - 1);
        let unused = self.slot.waiters.get() == 0 && !self.slot.locked.get();
        if !self.woke && unused {
            self.locks.slots.borrow_mut().remove(self.key);
        }
    }
}

impl<K: Eq + Hash + Clone> Drop for KeyGuard<K> {
    fn drop(&mut self) {
        self.slot.locked.set(false);
        if self.slot.waiters.get() == 0 {
            self.slots.borrow_mut().remove(&self.key);
        } else {
            self.slot.released.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_locks_serialize_one_key_and_free_their_slots() {
        glommio::LocalExecutorBuilder::default()
            .make()
            .unwrap()
            .run(async {
                let locks: Rc<KeyLocks<u32>> = Rc::default();
                let order = Rc::new(RefCell::new(Vec::new()));
                let mut tasks = Vec::new();
                for i in 0..4 {
                    let (locks, order) = (locks.clone(), order.clone());
                    tasks.push(glommio::spawn_local(async move {
                        let _guard = locks.lock(7).await;
                        order.borrow_mut().push((i, "in"));
                        glommio::yield_if_needed().await;
                        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                        order.borrow_mut().push((i, "out"));
                    }));
                }
                let other = locks.lock(8).await;
                drop(other);
                for task in tasks {
                    task.await;
                }
                let order = order.borrow();
                for pair in order.chunks(2) {
                    assert_eq!(
                        pair[0].0, pair[1].0,
                        "critical sections interleaved: {order:?}"
                    );
                }
                assert_eq!(locks.len(), 0);
            });
    }

    /// A woken waiter that has not run yet does not make the key look
    /// held: a writer that checks `is_locked` in a loop (and waits on the
    /// lock when it is) must not spin forever on a lock nobody holds.
    #[test]
    fn a_released_key_with_a_woken_waiter_is_not_locked() {
        glommio::LocalExecutorBuilder::default()
            .make()
            .unwrap()
            .run(async {
                let locks: Rc<KeyLocks<u32>> = Rc::default();
                let held = locks.lock(1).await;
                assert!(locks.is_locked(&1));
                let waiter = {
                    let locks = locks.clone();
                    glommio::spawn_local(async move { drop(locks.lock(1).await) })
                };
                glommio::yield_if_needed().await;
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                drop(held);
                // Released, the waiter woken but not run: free to look at.
                assert!(!locks.is_locked(&1));
                let mut spins = 0;
                while locks.is_locked(&1) {
                    drop(locks.lock(1).await);
                    spins += 1;
                    assert!(spins < 1000, "spinning on a free lock");
                }
                waiter.await;
                assert!(!locks.is_locked(&1));
                assert_eq!(locks.len(), 0);
            });
    }

    #[test]
    fn mutex_excludes() {
        glommio::LocalExecutorBuilder::default()
            .make()
            .unwrap()
            .run(async {
                let mutex = Rc::new(AsyncMutex::default());
                let inside = Rc::new(Cell::new(0));
                let mut tasks = Vec::new();
                for _ in 0..3 {
                    let (mutex, inside) = (mutex.clone(), inside.clone());
                    tasks.push(glommio::spawn_local(async move {
                        let _guard = mutex.lock().await;
                        inside.set(inside.get() + 1);
                        assert_eq!(inside.get(), 1);
                        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                        inside.set(inside.get() - 1);
                    }));
                }
                for task in tasks {
                    task.await;
                }
            });
    }
}
