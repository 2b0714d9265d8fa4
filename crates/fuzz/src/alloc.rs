//! A global allocator that measures the peak heap a fuzz case uses, per thread.
//!
//! The fuzz test binary installs [`CountingAlloc`] as its `#[global_allocator]`. The harness
//! arms it on the thread that runs a case ([`measure`]), so only that case's allocations count
//! and targets running on other test threads do not disturb each other. Allocation in threads a
//! parser spawns is not counted (none of the parsers under test spawn any).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static CURRENT: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, counting what armed threads hold.
pub struct CountingAlloc;

fn grew(bytes: usize) {
    // `try_with`: the allocator also runs while a thread's locals are being torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let now = CURRENT.with(|c| {
                let n = c.get().saturating_add(bytes);
                c.set(n);
                n
            });
            PEAK.with(|p| p.set(p.get().max(now)));
        }
    });
}

fn shrank(bytes: usize) {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            // Memory allocated before the case began may be freed during it.
            CURRENT.with(|c| c.set(c.get().saturating_sub(bytes)));
        }
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the bookkeeping touches only
// const-initialised thread-locals (no allocation, no unwinding).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as the new block alongside the old one: a moving realloc holds both.
            grew(new_size);
            shrank(layout.size());
        }
        p
    }
}

/// Runs `f` with this thread's allocations counted; returns its result and the peak number of
/// bytes it held at once (0 unless the binary's global allocator is [`CountingAlloc`]).
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    CURRENT.with(|c| c.set(0));
    PEAK.with(|p| p.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, PEAK.with(Cell::get))
}
