//! berth's global allocator: the C library's, with mid-size blocks kept
//! for reuse while the daemon works through a burst (start-up, a `ps` of
//! many containers) and handed back once its loop is idle.
//!
//! musl's allocator maps a group of its own for each mid-size block (from
//! about 1 KiB up) and unmaps it as soon as the block is freed: parsing a
//! definition, reading a record or answering for one container maps and
//! unmaps pages several times over, and on a virtual machine each pair
//! costs some 10 µs (a page fault, and a TLB flush on every CPU). Here a
//! block of 512 bytes to 128 KiB is always taken at the top of its class
//! (a quarter of a power of two apart: at most a quarter wasted), so any
//! freed block of a class fits any later request of that class. The
//! daemon turns keeping on ([`keep_freed`]); each class then keeps up to
//! [`PER_CLASS`] freed blocks and all classes [`KEPT_MAX`] bytes, and
//! [`trim`] frees them when the loop has nothing to do. Other roles
//! (monitor, client) keep nothing: their blocks go straight back.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Smallest request that is classed (exclusive): below this, musl's
/// groups are carved from its own larger ones and cost no system call.
const SMALLEST: usize = 512;
/// Largest request that is classed: above, musl maps each block alone
/// whatever is done here.
const LARGEST: usize = 128 * 1024;
/// Classes: four per power of two from SMALLEST to LARGEST.
const CLASSES: usize = 4 * (LARGEST.trailing_zeros() - SMALLEST.trailing_zeros()) as usize;
/// Freed blocks kept per class at most.
const PER_CLASS: u8 = 8;
/// Bytes kept in freed blocks at most, over all classes.
const KEPT_MAX: usize = 512 * 1024;
/// Alignment of classed blocks: what malloc gives.
const ALIGN: usize = 16;

/// The class of a request of `size` bytes, if it is classed.
fn class_of(size: usize) -> Option<usize> {
    if size <= SMALLEST || size > LARGEST {
        return None;
    }
    // size is in (2^octave, 2^(octave+1)]; each quarter of that range is
    // a class.
    let octave = usize::BITS - 1 - (size - 1).leading_zeros();
    let base = 1usize << octave;
    let quarter = (size - base).div_ceil(base / 4);
    Some((octave - SMALLEST.trailing_zeros()) as usize * 4 + quarter - 1)
}

/// The size of the blocks of class `class`.
fn class_size(class: usize) -> usize {
    let base = SMALLEST << (class / 4);
    base + (class % 4 + 1) * (base / 4)
}

fn class_layout(class: usize) -> Layout {
    // The sizes are below isize::MAX and ALIGN is a power of two.
    Layout::from_size_align(class_size(class), ALIGN).unwrap_or(Layout::new::<u8>())
}

struct Kept {
    /// Each list is linked through the first word of its blocks.
    heads: [*mut u8; CLASSES],
    counts: [u8; CLASSES],
    bytes: usize,
}

pub struct Allocator {
    /// A spin lock over `kept`: the daemon has one thread, so it is never
    /// contended there; tests run several.
    busy: AtomicBool,
    keeping: AtomicBool,
    kept: UnsafeCell<Kept>,
}

// SAFETY: `kept` is only touched with `busy` held (see `Allocator::with`).
unsafe impl Sync for Allocator {}

#[global_allocator]
static ALLOCATOR: Allocator = Allocator {
    busy: AtomicBool::new(false),
    keeping: AtomicBool::new(false),
    kept: UnsafeCell::new(Kept {
        heads: [ptr::null_mut(); CLASSES],
        counts: [0; CLASSES],
        bytes: 0,
    }),
};

/// From now on, freed mid-size blocks are kept for reuse (the daemon).
pub fn keep_freed() {
    ALLOCATOR.keeping.store(true, Ordering::Relaxed);
}

/// Whether freed blocks are kept now, for [`trim`] to free.
pub fn holding() -> bool {
    ALLOCATOR.with(|k| k.bytes > 0)
}

/// Frees every kept block.
pub fn trim() {
    for class in 0..CLASSES {
        while let Some(block) = ALLOCATOR.with(|k| k.pop(class)) {
            // SAFETY: the block was allocated by System with this class's
            // layout (see `Allocator::alloc`) and nothing else holds it.
            unsafe { System.dealloc(block, class_layout(class)) };
        }
    }
}

impl Kept {
    fn pop(&mut self, class: usize) -> Option<*mut u8> {
        let block = self.heads[class];
        if block.is_null() {
            return None;
        }
        // SAFETY: a kept block is at least SMALLEST bytes, aligned to
        // ALIGN, and its first word was written by `push`.
        self.heads[class] = unsafe { block.cast::<*mut u8>().read() };
        self.counts[class] -= 1;
        self.bytes -= class_size(class);
        Some(block)
    }

    /// Keeps `block` of `class` if there is room; whether it did.
    fn push(&mut self, class: usize, block: *mut u8) -> bool {
        let size = class_size(class);
        if self.counts[class] >= PER_CLASS || self.bytes + size > KEPT_MAX {
            return false;
        }
        // SAFETY: the block is ours (freed by its user), class-sized and
        // aligned: its first word is free to hold the link.
        unsafe { block.cast::<*mut u8>().write(self.heads[class]) };
        self.heads[class] = block;
        self.counts[class] += 1;
        self.bytes += size;
        true
    }
}

impl Allocator {
    fn with<R>(&self, f: impl FnOnce(&mut Kept) -> R) -> R {
        while self
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: `busy` is held: no other reference to `kept` exists.
        let r = f(unsafe { &mut *self.kept.get() });
        self.busy.store(false, Ordering::Release);
        r
    }

    fn classed(layout: Layout) -> Option<usize> {
        if layout.align() > ALIGN {
            return None;
        }
        class_of(layout.size())
    }
}

// SAFETY: every block is the C library's (through System). A classed
// block is allocated with its class's layout and freed with it, whatever
// size within the class its user asked for; its user only ever gets
// `layout.size()` bytes of the class's size, so a kept block fits any
// request of its class.
unsafe impl GlobalAlloc for Allocator {
    // Kept out of line: inlined at every allocation it would cost some
    // 20 KiB of text.
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match Self::classed(layout) {
            Some(class) => match self.with(|k| k.pop(class)) {
                Some(block) => block,
                // SAFETY: a valid non-zero layout.
                None => unsafe { System.alloc(class_layout(class)) },
            },
            // SAFETY: the caller's layout, passed on.
            None => unsafe { System.alloc(layout) },
        }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match Self::classed(layout) {
            Some(class) => {
                if self.keeping.load(Ordering::Relaxed) && self.with(|k| k.push(class, block)) {
                    return;
                }
                // SAFETY: allocated with this class's layout (see alloc).
                unsafe { System.dealloc(block, class_layout(class)) }
            }
            // SAFETY: allocated by System with this layout.
            None => unsafe { System.dealloc(block, layout) },
        }
    }

    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match Self::classed(layout) {
            Some(_) => {
                // SAFETY: the caller's layout.
                let block = unsafe { self.alloc(layout) };
                if !block.is_null() {
                    // SAFETY: the block holds at least layout.size() bytes.
                    unsafe { block.write_bytes(0, layout.size()) };
                }
                block
            }
            // SAFETY: the caller's layout, passed on.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    #[inline(never)]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = Self::classed(layout);
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        let new = Self::classed(new_layout);
        match (old, new) {
            // Same class: the block already has the room.
            (Some(a), Some(b)) if a == b => block,
            // SAFETY: neither is classed: System's block, System's realloc.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: a valid layout; the copy stays within both
                // blocks; the old one is freed as it was allocated.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_their_range_without_gaps_and_waste_at_most_a_quarter() {
        assert_eq!(class_of(SMALLEST), None);
        assert_eq!(class_of(LARGEST + 1), None);
        assert_eq!(class_of(SMALLEST + 1), Some(0));
        assert_eq!(class_of(LARGEST), Some(CLASSES - 1));
        assert_eq!(class_size(CLASSES - 1), LARGEST);
        let mut last = 0;
        for size in SMALLEST + 1..=LARGEST {
            let class = class_of(size).unwrap();
            assert!(class == last || class == last + 1, "size {size}");
            last = class;
            let room = class_size(class);
            assert!(room >= size, "size {size} in class {class} of {room}");
            assert!(
                room - size < size / 4 + 1,
                "size {size} wastes {}",
                room - size
            );
            if class > 0 {
                assert!(
                    class_size(class - 1) < size,
                    "size {size} fits a smaller class"
                );
            }
        }
    }

    #[test]
    fn kept_blocks_are_reused_within_their_class_and_trimmed() {
        // Not through the global allocator's shared lists (other tests
        // allocate at the same time): a Kept of its own.
        let mut kept = Kept {
            heads: [ptr::null_mut(); CLASSES],
            counts: [0; CLASSES],
            bytes: 0,
        };
        let class = class_of(3000).unwrap();
        let layout = class_layout(class);
        // SAFETY: valid layouts; each block is freed once, as allocated.
        unsafe {
            let blocks: Vec<*mut u8> = (0..PER_CLASS + 2).map(|_| System.alloc(layout)).collect();
            let mut taken = 0;
            for &b in &blocks {
                if kept.push(class, b) {
                    taken += 1;
                } else {
                    System.dealloc(b, layout);
                }
            }
            assert_eq!(taken, PER_CLASS as usize);
            assert_eq!(kept.bytes, PER_CLASS as usize * class_size(class));
            let again = kept.pop(class).unwrap();
            assert_eq!(
                again,
                blocks[PER_CLASS as usize - 1],
                "the last kept comes first"
            );
            System.dealloc(again, layout);
            while let Some(b) = kept.pop(class) {
                System.dealloc(b, layout);
            }
            assert_eq!(kept.bytes, 0);
            assert!(kept.pop(class).is_none());
        }
    }

    #[test]
    fn a_vec_grows_and_shrinks_across_classes_with_its_bytes_intact() {
        let mut v: Vec<u8> = Vec::new();
        for i in 0..200_000u32 {
            v.push(i as u8);
        }
        assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
        v.truncate(700);
        v.shrink_to_fit();
        assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
        let zeroed = vec![0u8; 5000];
        assert!(zeroed.iter().all(|&b| b == 0));
    }
}
