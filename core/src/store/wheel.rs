//! A shard's expiry records: slot numbers bucketed by the tick at which they fall due.
//!
//! Every stored entry has exactly one record, and the entry knows where it is (its due tick and
//! its position in that tick's bucket), so removing an entry removes its record at once: the
//! wheel holds as many records as the shard holds entries, whatever the churn. Buckets shrink as
//! they empty, so a burst of writes that were evicted since leaves no memory behind.

use std::collections::BTreeMap;

/// Where an entry's record is: its due tick and its index in that tick's bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Place {
    pub(super) due: u32,
    pub(super) pos: u32,
}

#[derive(Default)]
pub(super) struct Wheel {
    buckets: BTreeMap<u32, Vec<u32>>,
}

impl Wheel {
    /// Adds a record for slot `idx`, due at `due`; returns where it went.
    pub(super) fn push(&mut self, due: u32, idx: u32) -> Place {
        let bucket = self.buckets.entry(due).or_default();
        bucket.push(idx);
        Place { due, pos: (bucket.len() - 1) as u32 }
    }

    /// Removes the record at `place`. Returns the slot whose record moved into `place.pos` (the
    /// caller updates that entry's place), if one did.
    pub(super) fn remove(&mut self, place: Place) -> Option<u32> {
        let Some(bucket) = self.buckets.get_mut(&place.due) else {
            debug_assert!(false, "an entry's record is in the wheel");
            return None;
        };
        let pos = place.pos as usize;
        bucket.swap_remove(pos);
        let moved = bucket.get(pos).copied();
        if bucket.is_empty() {
            self.buckets.remove(&place.due);
        } else if bucket.capacity() > 16 && bucket.len() < bucket.capacity() / 4 {
            bucket.shrink_to(bucket.len() * 2);
        }
        moved
    }

    /// Takes up to `max` records of the earliest bucket, if it is due by `now_tick`.
    pub(super) fn take_due(&mut self, now_tick: u32, max: usize) -> Option<(u32, Vec<u32>)> {
        let mut first = self.buckets.first_entry()?;
        let due = *first.key();
        if due > now_tick {
            return None;
        }
        let bucket = first.get_mut();
        let batch = bucket.split_off(bucket.len().saturating_sub(max));
        if bucket.is_empty() {
            first.remove();
        }
        Some((due, batch))
    }

    /// Whether a record is due by `now_tick`.
    pub(super) fn has_due(&self, now_tick: u32) -> bool {
        self.buckets.first_key_value().is_some_and(|(&t, _)| t <= now_tick)
    }

    /// Every record, for rebuilding after the tick length changed.
    pub(super) fn clear(&mut self) {
        self.buckets.clear();
    }

    /// How many records the wheel holds (tests check it follows the entries).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_record_reports_the_one_that_moved_into_its_place() {
        let mut w = Wheel::default();
        let a = w.push(5, 10);
        let b = w.push(5, 11);
        let c = w.push(5, 12);
        assert_eq!((a.pos, b.pos, c.pos), (0, 1, 2));
        assert_eq!(w.remove(a), Some(12), "the last record moved into slot 0");
        assert_eq!(w.remove(Place { due: 5, pos: 1 }), None, "the last one: nothing moved");
        assert_eq!(w.len(), 1);
        assert_eq!(w.take_due(4, 64), None, "not due yet");
        assert_eq!(w.take_due(5, 64), Some((5, vec![12])));
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn buckets_shrink_as_they_empty() {
        let mut w = Wheel::default();
        let places: Vec<Place> = (0..1000).map(|i| w.push(1, i)).collect();
        for _ in 0..990 {
            let last = w.buckets[&1].len() as u32 - 1;
            w.remove(Place { due: 1, pos: last });
        }
        assert!(w.buckets[&1].capacity() <= 40, "capacity {}", w.buckets[&1].capacity());
        assert_eq!(places.len(), 1000);
    }
}
