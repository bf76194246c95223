//! Codec threads give way to the effect when both share the CPU.
//!
//! When the effect runs on the CPU (a style network on rayon's threads), it
//! competes for the same cores with the codecs: the decoder's frame
//! threads, x264's threads, and the colour conversions in the decode and
//! encode threads. At equal priority the scheduler slices them evenly, and
//! a rayon worker preempted in the middle of a layer holds up its partner
//! at the next join: the `fast` network ran 40% slower inside the pipeline
//! than alone. Codec threads under `SCHED_IDLE` are preempted as soon as
//! an effect thread wakes, so the effect runs as if alone while the codecs
//! use the gaps it leaves, and the bounded queues keep them in step (in
//! BENCHMARKS.md: 60% -> 68% of the effect's speed end to end, 2 cores).
//!
//! Not for GPU effects: there the CPU is the codecs', and under
//! `SCHED_IDLE` any busy process on the machine would starve them.
//!
//! FFmpeg starts its worker threads when a codec is opened, on the opening
//! thread; [`ThreadSnapshot`] finds them as the threads that appeared
//! around the opening. Linux only; elsewhere this does nothing.

use std::collections::HashSet;

/// This process's thread ids (Linux; empty elsewhere).
fn thread_ids() -> HashSet<i32> {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Moves one thread of this process to `SCHED_IDLE`.
#[cfg(target_os = "linux")]
fn make_idle(tid: i32) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain syscall on one of our own thread ids, with a valid
    // parameter; on failure the thread just keeps its priority.
    unsafe {
        libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param);
    }
}

#[cfg(not(target_os = "linux"))]
fn make_idle(_tid: i32) {}

/// The threads alive at one moment, to find those created after it.
pub struct ThreadSnapshot(HashSet<i32>);

impl ThreadSnapshot {
    /// Takes the snapshot. Starts rayon's global pool first, so that its
    /// workers (the effect's) are never taken for codec threads.
    pub fn now() -> Self {
        rayon::current_num_threads();
        Self(thread_ids())
    }

    /// Gives way with every thread created since the snapshot (the
    /// codecs' workers).
    pub fn yield_new_threads(&self) {
        for tid in thread_ids().difference(&self.0) {
            make_idle(*tid);
        }
    }
}

/// Gives way with the calling thread (the decode and encode threads).
pub fn yield_this_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions.
    make_idle(unsafe { libc::gettid() });
}
