//! A bounded crossbeam channel with an async receiving end: the link between
//! the shards (glommio) and the control-plane thread (tokio). Senders never
//! block: a full mailbox is an error the sender handles (back-pressure).

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use futures_util::task::AtomicWaker;

/// Creates a mailbox that holds at most `capacity` messages.
pub fn mailbox<T>(capacity: usize) -> (MailboxSender<T>, MailboxReceiver<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let waker = Arc::new(AtomicWaker::new());
    (
        MailboxSender {
            tx: Some(tx),
            waker: waker.clone(),
        },
        MailboxReceiver { rx, waker },
    )
}

#[derive(Debug)]
pub struct MailboxSender<T> {
    // An `Option` only so that `drop` can disconnect before it wakes.
    tx: Option<Sender<T>>,
    waker: Arc<AtomicWaker>,
}

#[derive(Debug)]
pub struct MailboxReceiver<T> {
    rx: Receiver<T>,
    waker: Arc<AtomicWaker>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MailboxError {
    #[error("mailbox is full")]
    Full,
    #[error("mailbox receiver is gone")]
    Closed,
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }
}

impl<T> MailboxSender<T> {
    /// Queues a message without waiting; returns it with the reason on failure.
    pub fn try_send(&self, msg: T) -> Result<(), (MailboxError, T)> {
        let Some(tx) = &self.tx else {
            return Err((MailboxError::Closed, msg));
        };
        match tx.try_send(msg) {
            Ok(()) => {
                self.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(m)) => Err((MailboxError::Full, m)),
            Err(TrySendError::Disconnected(m)) => Err((MailboxError::Closed, m)),
        }
    }
}

impl<T> Drop for MailboxSender<T> {
    fn drop(&mut self) {
        // Disconnect first, then wake, so a receiver that wakes sees the end.
        drop(self.tx.take());
        self.waker.wake();
    }
}

impl<T> MailboxReceiver<T> {
    /// The next message, or `None` once every sender is gone and the mailbox is empty.
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|cx| {
            match self.rx.try_recv() {
                Ok(m) => return Poll::Ready(Some(m)),
                Err(TryRecvError::Disconnected) => return Poll::Ready(None),
                Err(TryRecvError::Empty) => {}
            }
            self.waker.register(cx.waker());
            // A message may have arrived between the first look and the
            // registration; look again so it cannot be missed.
            match self.rx.try_recv() {
                Ok(m) => Poll::Ready(Some(m)),
                Err(TryRecvError::Disconnected) => Poll::Ready(None),
                Err(TryRecvError::Empty) => Poll::Pending,
            }
        })
        .await
    }

    pub fn try_recv(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_mailbox_refuses_and_returns_the_message() {
        let (tx, rx) = mailbox::<u32>(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err((MailboxError::Full, 3)));
        assert_eq!(rx.try_recv(), Some(1));
        tx.try_send(3).unwrap();
        assert_eq!(rx.len(), 2);
    }

    #[test]
    fn receiver_on_tokio_wakes_from_another_thread_and_sees_the_end() {
        let (tx, rx) = mailbox::<u32>(4);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let producer = std::thread::spawn(move || {
            for i in 0..100 {
                while tx.try_send(i).is_err() {
                    std::thread::yield_now();
                }
            }
        });
        let got = rt.block_on(async {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        producer.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }
}
