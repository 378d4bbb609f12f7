//! Hit counts kept per thread.
//!
//! A hit is the one path where the count costs as much as the work: an atomic add is a locked
//! instruction (a full barrier on x86-64), 5 ns of a 50 ns Python hit here. So each thread that
//! hits a store counts in a block of its own, which only it writes, with a plain load and store;
//! reading the count sums the blocks. A block belongs to the store as well as to its thread, so
//! the counts of a thread that ended stay counted, and a thread forgets the blocks of a store
//! that is gone the next time it starts counting for another store.

use std::cell::RefCell;
use std::sync::Arc;

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
    blocks: Mutex<Vec<Arc<Block>>>,
    /// Hits counted while the thread's own blocks are gone (in its thread-local destructors).
    late: Block,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Tally {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            blocks: Mutex::new(Vec::new()),
            late: Block::default(),
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
            self.late.pick(stale).fetch_add(1, Relaxed);
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
                self.blocks.lock().push(block.clone());
                mine.push((self.id, block));
            }
        }
    }

    /// The hits so far, and how many of them were on values being refreshed.
    pub(crate) fn sums(&self) -> (u64, u64) {
        let blocks = self.blocks.lock();
        let all = blocks.iter().map(|b| &**b).chain([&self.late]);
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

    #[test]
    fn counts_of_every_thread_add_up_and_outlive_it() {
        let tally = Tally::new();
        let start = Barrier::new(4);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (tally, start) = (&tally, &start);
                s.spawn(move || {
                    start.wait();
                    for i in 0..1000 {
                        tally.hit(t == 0 && i % 10 == 0);
                    }
                });
            }
        });
        // Every thread has ended: its block is still counted.
        assert_eq!(tally.sums(), (4000, 100));
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
