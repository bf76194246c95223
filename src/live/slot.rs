//! The latest-frame slot: how live stages hand frames to each other.
//!
//! A live source does not wait for the effect. If frames were queued, a slow
//! effect would fall further and further behind the camera and the picture
//! would lag by seconds; instead every hand-over holds exactly one frame,
//! and putting a new one replaces (drops) a frame nobody took yet. The
//! consumer therefore always works on the newest frame, the lag stays
//! below one frame of each stage, and the drops are counted so the log can
//! say how many frames the effect could not keep up with.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What [`LatestSlot::take`] found.
#[derive(Debug)]
pub enum Taken<T> {
    /// The newest value.
    Value(T),
    /// Nothing arrived within the timeout.
    Empty,
    /// The producer closed the slot and no value is left.
    Closed,
}

/// A one-value mailbox between a producer and a consumer thread.
#[derive(Debug)]
pub struct LatestSlot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

#[derive(Debug)]
struct State<T> {
    value: Option<T>,
    closed: bool,
    put: u64,
    dropped: u64,
}

impl<T> Default for LatestSlot<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> LatestSlot<T> {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                value: None,
                closed: false,
                put: 0,
                dropped: 0,
            }),
            ready: Condvar::new(),
        }
    }

    /// A poisoned lock only means another stage panicked; the slot's state
    /// (an `Option` and counters) is still consistent, so keep going.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `value`, dropping any value not taken yet; returns whether
    /// one was dropped. Values put after [`LatestSlot::close`] are dropped.
    pub fn put(&self, value: T) -> bool {
        let mut s = self.lock();
        if s.closed {
            s.dropped += 1;
            return true;
        }
        s.put += 1;
        let replaced = s.value.replace(value).is_some();
        if replaced {
            s.dropped += 1;
        }
        drop(s);
        self.ready.notify_all();
        replaced
    }

    /// Takes the newest value, waiting up to `timeout` for one. A closed
    /// slot still hands out its last value before it reports `Closed`.
    pub fn take(&self, timeout: Duration) -> Taken<T> {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if let Some(v) = s.value.take() {
                return Taken::Value(v);
            }
            if s.closed {
                return Taken::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Taken::Empty;
            }
            s = self
                .ready
                .wait_timeout(s, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// No more values will come; wakes the consumer.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Values put so far (including those later dropped).
    pub fn put_count(&self) -> u64 {
        self.lock().put
    }

    /// Values replaced before anyone took them.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest_and_counts_drops() {
        let slot = LatestSlot::new();
        assert!(!slot.put(1));
        assert!(slot.put(2));
        assert!(slot.put(3));
        assert!(matches!(slot.take(Duration::ZERO), Taken::Value(3)));
        assert!(matches!(slot.take(Duration::ZERO), Taken::Empty));
        assert_eq!((slot.put_count(), slot.dropped()), (3, 2));
        slot.put(4);
        slot.close();
        assert!(matches!(slot.take(Duration::ZERO), Taken::Value(4)));
        assert!(matches!(slot.take(Duration::ZERO), Taken::Closed));
    }

    #[test]
    fn take_waits_for_a_producer() {
        let slot = std::sync::Arc::new(LatestSlot::new());
        let s = slot.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            s.put(7);
        });
        assert!(matches!(slot.take(Duration::from_secs(5)), Taken::Value(7)));
        t.join().unwrap();
    }
}
