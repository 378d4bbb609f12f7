//! Which stored keys carry which tag, for `invalidate_tag`.
//!
//! Only tagged entries are recorded, and a record goes with its entry, so the index holds
//! nothing for a tag whose entries are gone (an `invalidate_tag` of a tag nobody stored leaves
//! no trace).

use std::hash::Hash;
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

pub(super) struct TagIndex<K> {
    by_tag: HashMap<Arc<str>, HashSet<K>>,
    by_key: HashMap<K, Box<[Arc<str>]>>,
}

impl<K> Default for TagIndex<K> {
    fn default() -> Self {
        TagIndex { by_tag: HashMap::new(), by_key: HashMap::new() }
    }
}

impl<K: Hash + Eq + Clone> TagIndex<K> {
    /// Records that `key` is stored with `tags` (replacing what it had).
    pub(super) fn add(&mut self, key: &K, tags: &[&str]) {
        self.remove(key);
        let tags: Box<[Arc<str>]> = tags.iter().map(|&t| Arc::from(t)).collect();
        for tag in tags.iter() {
            self.by_tag.entry(tag.clone()).or_default().insert(key.clone());
        }
        self.by_key.insert(key.clone(), tags);
    }

    /// Forgets `key`'s tags.
    pub(super) fn remove(&mut self, key: &K) {
        let Some(tags) = self.by_key.remove(key) else { return };
        for tag in tags.iter() {
            if let Some(set) = self.by_tag.get_mut(tag) {
                set.remove(key);
                if set.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
    }

    /// The keys stored with `tag`, forgetting the tag (their entries are about to go).
    pub(super) fn take(&mut self, tag: &str) -> HashSet<K> {
        self.by_tag.remove(tag).unwrap_or_default()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.by_tag.is_empty() && self.by_key.is_empty()
    }
}
