//! A one-shot signal that needs no async runtime: raised once, awaited by
//! any number of futures. Used for readiness deadlines and for a caller
//! that hung up.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

/// A flag that is raised once; clones share it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Flag(Arc<Mutex<(bool, Vec<Waker>)>>);

impl Flag {
    /// Raises the flag and wakes whoever waits for it.
    pub(crate) fn raise(&self) {
        let wakers = {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            state.0 = true;
            std::mem::take(&mut state.1)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Resolves once the flag is raised.
    pub(crate) fn raised(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if state.0 {
                return Poll::Ready(());
            }
            if !state.1.iter().any(|w| w.will_wake(cx.waker())) {
                state.1.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

/// Raises its flag when dropped: held by the part of a call that the
/// caller's connection owns, so that its end is seen elsewhere.
#[cfg(feature = "axum")]
#[derive(Debug)]
pub(crate) struct RaiseOnDrop(pub(crate) Flag);

#[cfg(feature = "axum")]
impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.raise();
    }
}
