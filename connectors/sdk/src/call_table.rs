//! [`CallTable`], a bounded map of per-call state: the oldest entry goes when the table is
//! full, so a flood of calls that never hang up cannot grow memory without bound.

use std::collections::{HashMap, VecDeque};

/// A map of at most `capacity` entries that forgets the oldest inserted key first.
///
/// Meant for the state a connector keeps per call (keyed by the provider's call id)
/// between the notifications of that call.
///
/// ```
/// use kommutator_sdk::CallTable;
///
/// let mut calls = CallTable::new(2);
/// calls.insert("a".to_owned(), 1);
/// calls.insert("b".to_owned(), 2);
/// calls.insert("c".to_owned(), 3);
/// assert_eq!(calls.get("a"), None, "the oldest was forgotten");
/// assert_eq!(calls.get("c"), Some(&3));
/// assert_eq!(calls.len(), 2);
/// ```
#[derive(Debug)]
pub struct CallTable<V> {
    map: HashMap<String, (u64, V)>,
    /// Keys in insertion order with the generation they were inserted at; an entry whose
    /// generation no longer matches the map's was removed or re-inserted since.
    order: VecDeque<(u64, String)>,
    capacity: usize,
    next_gen: u64,
}

impl<V> CallTable<V> {
    /// An empty table holding at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            next_gen: 0,
        }
    }

    /// The value of `key`, if the table still holds it.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key).map(|(_, v)| v)
    }

    /// Inserts or replaces `key`; a replaced key keeps its place in the eviction order.
    pub fn insert(&mut self, key: String, value: V) {
        if let Some(slot) = self.map.get_mut(&key) {
            slot.1 = value;
            return;
        }
        let generation = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        self.order.push_back((generation, key.clone()));
        self.map.insert(key, (generation, value));
        while self.map.len() > self.capacity {
            let Some((g, k)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&k).is_some_and(|(mg, _)| *mg == g) {
                self.map.remove(&k);
            }
        }
        self.compact();
    }

    /// Forgets `key`, if present.
    pub fn remove(&mut self, key: &str) {
        self.map.remove(key);
        self.compact();
    }

    /// How many entries the table holds.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Drops order entries of removed keys once they outnumber the live ones, which keeps
    /// `order` within twice the capacity.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.capacity {
            let map = &self.map;
            self.order
                .retain(|(g, k)| map.get(k).is_some_and(|(mg, _)| mg == g));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_oldest_when_full() {
        let mut t = CallTable::new(2);
        t.insert("a".to_owned(), 1);
        t.insert("b".to_owned(), 2);
        t.insert("a".to_owned(), 10);
        t.insert("c".to_owned(), 3);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get("a"), None);
        assert_eq!(t.get("b"), Some(&2));
        assert_eq!(t.get("c"), Some(&3));
    }

    #[test]
    fn removed_and_reinserted_keys_are_not_evicted_early() {
        let mut t = CallTable::new(2);
        t.insert("a".to_owned(), 1);
        t.remove("a");
        t.insert("b".to_owned(), 2);
        t.insert("a".to_owned(), 3);
        t.insert("c".to_owned(), 4);
        assert_eq!(t.get("b"), None, "b is the oldest live key");
        assert_eq!(t.get("a"), Some(&3));
        assert_eq!(t.get("c"), Some(&4));
    }

    #[test]
    fn order_stays_bounded_under_churn() {
        let mut t = CallTable::new(4);
        for i in 0..10_000 {
            let k = format!("k{i}");
            t.insert(k.clone(), i);
            t.remove(&k);
        }
        assert_eq!(t.len(), 0);
        assert!(t.is_empty());
        assert!(t.order.len() <= 9, "{}", t.order.len());
    }
}
