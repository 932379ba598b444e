//! A vector whose items are also found by key: the hub's per-stream lists.
//!
//! # Invariants
//! - Items live in one contiguous `Vec`, so iterating them (the fan-out) is a plain
//!   slice walk, whatever the size.
//! - Finding, adding and removing by key are O(1) (amortized): a short list is scanned
//!   (cheaper than hashing, and no map is allocated for the usual one or two items);
//!   once it grows past [`SCAN_LIMIT`] a key → position map is kept beside it.
//! - Removal swaps the last item into the hole, so item order is not kept.
//! - Keys are unique within one list.

use std::collections::HashMap;
use std::hash::Hash;

/// Up to this many items a list is scanned; past it, the position map is built.
pub(crate) const SCAN_LIMIT: usize = 16;

/// Something with a key to find it by.
pub(crate) trait Keyed {
    /// The key type.
    type Key: Hash + Eq + Clone;
    /// This item's key.
    fn key(&self) -> &Self::Key;
}

/// A `Vec<T>` plus, once long, a map from key to position (see the module docs).
pub(crate) struct Indexed<T: Keyed> {
    items: Vec<T>,
    positions: Option<HashMap<T::Key, usize>>,
}

impl<T: Keyed> Default for Indexed<T> {
    fn default() -> Self {
        Indexed {
            items: Vec::new(),
            positions: None,
        }
    }
}

impl<T: Keyed> Indexed<T> {
    /// A list holding `item` only.
    pub(crate) fn one(item: T) -> Self {
        Indexed {
            items: vec![item],
            positions: None,
        }
    }

    /// The items, in no particular order.
    pub(crate) fn items(&self) -> &[T] {
        &self.items
    }

    /// Whether the list is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The position of the item with `key`.
    fn position(&self, key: &T::Key) -> Option<usize> {
        match &self.positions {
            Some(map) => map.get(key).copied(),
            None => self.items.iter().position(|i| i.key() == key),
        }
    }

    /// The item with `key`.
    pub(crate) fn get_mut(&mut self, key: &T::Key) -> Option<&mut T> {
        let at = self.position(key)?;
        self.items.get_mut(at)
    }

    /// Adds `item`, whose key must not be in the list yet (check with
    /// [`Indexed::get_mut`]).
    pub(crate) fn push_new(&mut self, item: T) {
        match &mut self.positions {
            Some(map) => {
                map.insert(item.key().clone(), self.items.len());
            }
            None if self.items.len() >= SCAN_LIMIT => {
                let mut map: HashMap<T::Key, usize> = self
                    .items
                    .iter()
                    .enumerate()
                    .map(|(at, i)| (i.key().clone(), at))
                    .collect();
                map.insert(item.key().clone(), self.items.len());
                self.positions = Some(map);
            }
            None => {}
        }
        self.items.push(item);
    }

    /// Removes and returns the item with `key`, moving the last item into its place.
    pub(crate) fn remove(&mut self, key: &T::Key) -> Option<T> {
        let at = self.position(key)?;
        let item = self.items.swap_remove(at);
        if let Some(map) = &mut self.positions {
            map.remove(key);
            if let Some(moved) = self.items.get(at) {
                map.insert(moved.key().clone(), at);
            }
            // Shrunk well below the limit: back to scanning, and free the map.
            if self.items.len() < SCAN_LIMIT / 2 {
                self.positions = None;
            }
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    thread_local! {
        static COMPARISONS: Cell<usize> = const { Cell::new(0) };
    }

    /// A key that counts how often it is compared.
    #[derive(Debug, Clone)]
    struct Counted(u32);

    impl Hash for Counted {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.0.hash(state);
        }
    }

    impl PartialEq for Counted {
        fn eq(&self, other: &Self) -> bool {
            COMPARISONS.with(|c| c.set(c.get() + 1));
            self.0 == other.0
        }
    }
    impl Eq for Counted {}

    impl Keyed for Counted {
        type Key = Counted;
        fn key(&self) -> &Counted {
            self
        }
    }

    fn comparisons<R>(f: impl FnOnce() -> R) -> (R, usize) {
        COMPARISONS.with(|c| c.set(0));
        let r = f();
        (r, COMPARISONS.with(Cell::get))
    }

    #[test]
    fn lookups_in_a_long_list_compare_a_bounded_number_of_keys() {
        let n = 10_000;
        let mut list = Indexed::default();
        for k in 0..n {
            let (found, _) = comparisons(|| list.get_mut(&Counted(k)).is_some());
            assert!(!found);
            list.push_new(Counted(k));
        }
        // A linear scan compares ~n/2 keys per lookup; the map a handful.
        for k in [0, n / 2, n - 1] {
            let (found, cmp) = comparisons(|| list.get_mut(&Counted(k)).is_some());
            assert!(found, "{k} is in the list");
            assert!(cmp <= 4, "finding {k} compared {cmp} keys");
            let (removed, cmp) = comparisons(|| list.remove(&Counted(k)).is_some());
            assert!(removed);
            assert!(cmp <= 8, "removing {k} compared {cmp} keys");
        }
        assert_eq!(list.items().len(), n as usize - 3);
    }

    proptest! {
        /// Any sequence of adds and removes agrees with a set, across the switches
        /// between scanning and the map.
        #[test]
        fn agrees_with_a_set(ops in proptest::collection::vec((any::<bool>(), 0u32..48), 0..400)) {
            let mut list = Indexed::default();
            let mut model = BTreeSet::new();
            for (add, k) in ops {
                if add {
                    if list.get_mut(&Counted(k)).is_none() {
                        list.push_new(Counted(k));
                    }
                    model.insert(k);
                } else {
                    prop_assert_eq!(list.remove(&Counted(k)).is_some(), model.remove(&k));
                }
                let mut items: Vec<u32> = list.items().iter().map(|c| c.0).collect();
                items.sort_unstable();
                prop_assert_eq!(&items, &model.iter().copied().collect::<Vec<_>>());
                for k in 0..48 {
                    prop_assert_eq!(list.get_mut(&Counted(k)).map(|c| c.0), model.contains(&k).then_some(k));
                }
            }
            prop_assert_eq!(list.is_empty(), model.is_empty());
        }
    }
}
