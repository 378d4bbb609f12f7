//! Hit counts kept per thread.
//!
//! A hit is the one path where the count costs as much as the work: an atomic add is a locked
//! instruction (a full barrier on x86-64), 5 ns of a 50 ns Python hit here. So each thread that
//! hits a store counts in a block of its own, which only it writes, with a plain load and store;
//! reading the count sums the blocks. A block belongs to the store as well as to its thread: when
//! the thread ends, the store adds its counts to those of the threads that ended before and lets
//! the block go (the next time a thread joins or the count is read), so a program that starts a
//! thread per request keeps one block per live thread; and a thread forgets the blocks of a store
//! that is gone the next time it starts counting for another store.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{Ordering::Acquire, fence};

use crate::sync::{AtomicU64, Mutex, Ordering::Relaxed};

/// Hands out store ids; a `std` atomic, as it only numbers (see `crate::sync`).
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One thread's counts for one store.
#[derive(Default)]
struct Block {
    hits: AtomicU64,
    /// Hits on values being refreshed (counted here instead of in `hits`).
    stale: AtomicU64,
}

impl Block {
    fn pick(&self, stale: bool) -> &AtomicU64 {
        if stale { &self.stale } else { &self.hits }
    }
}

crate::sync::thread_local! {
    /// This thread's blocks, by store id, the one counted in last at the end.
    static MINE: RefCell<Vec<(u64, Arc<Block>)>> = const { RefCell::new(Vec::new()) };
}

/// The hit counts of one store.
pub(crate) struct Tally {
    id: u64,
    /// The blocks of the threads that count for this store.
    blocks: Mutex<Vec<Arc<Block>>>,
    /// The counts of threads that ended, and hits counted while a thread's own blocks were gone
    /// (in its thread-local destructors).
    retired: Block,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Tally {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            blocks: Mutex::new(Vec::new()),
            retired: Block::default(),
        }
    }

    /// Counts a hit (`stale`: on a value being refreshed).
    #[inline]
    pub(crate) fn hit(&self, stale: bool) {
        let counted = MINE.try_with(|mine| {
            let mut mine = mine.borrow_mut();
            if mine.last().is_none_or(|(id, _)| *id != self.id) {
                self.adopt(&mut mine);
            }
            let (_, block) = mine.last().expect("adopted");
            // Only this thread writes this block: no other write can fall between the two.
            let c = block.pick(stale);
            c.store(c.load(Relaxed) + 1, Relaxed);
        });
        if counted.is_err() {
            self.retired.pick(stale).fetch_add(1, Relaxed);
        }
    }

    /// Puts this thread's block for the store last in `mine`, making it if there is none.
    #[cold]
    fn adopt(&self, mine: &mut Vec<(u64, Arc<Block>)>) {
        match mine.iter().position(|(id, _)| *id == self.id) {
            Some(at) => {
                let entry = mine.remove(at);
                mine.push(entry);
            }
            None => {
                // The blocks no store holds any more: their stores were dropped.
                mine.retain(|(_, b)| Arc::strong_count(b) > 1);
                let block = Arc::new(Block::default());
                let mut blocks = self.blocks.lock();
                self.retire_ended(&mut blocks);
                blocks.push(block.clone());
                mine.push((self.id, block));
            }
        }
    }

    /// Adds the counts of the threads that ended to `retired` and drops their blocks.
    fn retire_ended(&self, blocks: &mut Vec<Arc<Block>>) {
        blocks.retain(|b| {
            if Arc::strong_count(b) > 1 {
                return true;
            }
            // Its thread let go of it after its last count (a release): see that count.
            fence(Acquire);
            for stale in [false, true] {
                self.retired.pick(stale).fetch_add(b.pick(stale).load(Relaxed), Relaxed);
            }
            false
        });
    }

    /// The hits so far, and how many of them were on values being refreshed.
    pub(crate) fn sums(&self) -> (u64, u64) {
        let mut blocks = self.blocks.lock();
        self.retire_ended(&mut blocks);
        let all = blocks.iter().map(|b| &**b).chain([&self.retired]);
        all.fold((0, 0), |(h, s), b| {
            let stale = b.stale.load(Relaxed);
            (h + b.hits.load(Relaxed) + stale, s + stale)
        })
    }
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use std::sync::Barrier;

    use super::*;

    // Threads are joined by their handles, not by a scope: a handle's join returns once the
    // thread has ended, its thread-locals dropped (a scope may return before).
    #[test]
    fn counts_of_every_thread_add_up_and_outlive_it() {
        let tally = Arc::new(Tally::new());
        let start = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (tally, start) = (tally.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for i in 0..1000 {
                        tally.hit(t == 0 && i % 10 == 0);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        // Every thread has ended: its counts are still counted, and its block is gone.
        assert_eq!(tally.sums(), (4000, 100));
        assert!(tally.blocks.lock().is_empty());
    }

    #[test]
    fn a_thread_per_request_leaves_one_block_per_live_thread() {
        let tally = Arc::new(Tally::new());
        for _ in 0..100 {
            let tally = tally.clone();
            std::thread::spawn(move || tally.hit(false)).join().unwrap();
        }
        tally.hit(false);
        // Each new thread retired the ended ones' blocks: this thread's is the one left.
        assert_eq!(tally.blocks.lock().len(), 1);
        assert_eq!(tally.sums(), (101, 0));
    }

    #[test]
    fn a_thread_counts_for_several_stores_and_forgets_dropped_ones() {
        let (a, b) = (Tally::new(), Tally::new());
        for _ in 0..3 {
            a.hit(false);
            b.hit(true);
        }
        assert_eq!((a.sums(), b.sums()), ((3, 0), (3, 3)));
        let held = || MINE.with(|m| m.borrow().len());
        assert_eq!(held(), 2);
        drop(b);
        let c = Tally::new();
        c.hit(false);
        // `b`'s block went when `c`'s came; `a`'s stays.
        assert_eq!(held(), 2);
        a.hit(false);
        assert_eq!((a.sums(), c.sums()), ((4, 0), (1, 0)));
    }
}
