//! A connection's subscription table: a vector searched linearly.
//!
//! A connection holds a handful of subscriptions (one to five in the apps we replace,
//! capped by `--max-subscriptions`), so a vector costs one small allocation where a
//! hash map would hold ~200 bytes of buckets per idle connection, and a linear scan
//! of a few identifiers is as fast as hashing one.

/// Entries keyed by `K`, in insertion order (removal swaps the last one in).
#[derive(Debug)]
pub(crate) struct Table<K, V> {
    items: Vec<(K, V)>,
}

impl<K: PartialEq, V> Table<K, V> {
    pub(crate) fn new() -> Self {
        Table { items: Vec::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.items.iter().any(|(k, _)| k == key)
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.items
            .iter_mut()
            .find_map(|(k, v)| (k == key).then_some(v))
    }

    /// Inserts or replaces the value for `key`.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        match self.get_mut(&key) {
            Some(slot) => *slot = value,
            None => {
                if self.items.capacity() == self.items.len() {
                    // Grow one by one: most connections never pass one or two entries.
                    self.items.reserve_exact(1);
                }
                self.items.push((key, value));
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.items.iter().position(|(k, _)| k == key)?;
        let (_, v) = self.items.swap_remove(i);
        if self.items.is_empty() {
            self.items = Vec::new();
        }
        Some(v)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.items.iter().map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn behaves_like_a_map() {
        let mut t = Table::new();
        assert!(t.is_empty());
        t.insert("a", 1);
        t.insert("b", 2);
        t.insert("a", 3);
        assert_eq!(t.len(), 2);
        assert!(t.contains_key(&"a"));
        assert_eq!(t.get_mut(&"a").copied(), Some(3));
        assert_eq!(t.remove(&"a"), Some(3));
        assert_eq!(t.remove(&"a"), None);
        assert_eq!(t.keys().copied().collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(t.remove(&"b"), Some(2));
        assert!(t.is_empty());
    }
}
