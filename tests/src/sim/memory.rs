//! The heap a simulation takes: an allocator that counts, per thread, the
//! bytes allocated and not yet freed, and their peak. A run happens on one
//! thread (its current-thread runtime), so that thread's count is the
//! run's. Install it in the test binary:
//!
//! ```ignore
//! #[global_allocator]
//! static HEAP: octopii_tests::sim::memory::Counting = octopii_tests::sim::memory::Counting;
//! ```
//!
//! Without it, [`Usage`] reads zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts what this thread allocates, over the system allocator.
pub struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn add(bytes: i64) {
    // `try_with`: a thread being torn down still frees.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + bytes;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call goes to `System` unchanged; the counters are
// thread-locals without destructors, so counting never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add(layout.size() as i64);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as i64));
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(layout.size() as i64);
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            add(new_size as i64 - layout.size() as i64);
        }
        moved
    }
}

/// This thread's heap use, from a starting point.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    start: i64,
}

impl Usage {
    /// Starts counting the peak from what this thread holds now.
    pub fn start() -> Self {
        let start = LIVE.with(Cell::get);
        PEAK.with(|peak| peak.set(start));
        Usage { start }
    }

    /// Bytes this thread held at most since [`start`](Self::start), above
    /// what it held then.
    pub fn peak(&self) -> u64 {
        (PEAK.with(Cell::get) - self.start).max(0) as u64
    }
}
