//! The reconciliation items of shared spaces, kept in memory.
//!
//! A catch-up session starts by comparing the items of a space (one per
//! document: its id and a digest of its heads, [`SyncItem`]) with a peer's.
//! Reading them from `by_space` and hashing every document's heads costs
//! O(N) for every session, however small the difference. Instead, the
//! first session of a space in this process reads them once, and every
//! write of `by_space` after that updates them here: a session takes a
//! snapshot ([`ItemSet`], shared, never copied) without touching sled. A
//! space that has no document when this process first writes to it (one
//! created or joined here) is kept from that write on, and never read.
//!
//! Per space, a sorted array (32 bytes per document) and the changes made
//! since it was built, by id. A snapshot folds the changes into a new
//! array (a merge of two sorted sequences: no sled, no hashing); so does a
//! write once the changes reach an eighth of the array, so that a long run
//! of writes (an initial sync, an import) costs O(log N) each, amortized,
//! and memory stays near 32 bytes a document (64 once a session has asked
//! the snapshot for fingerprints: its prefix sums, see
//! [`ItemSet::id_sum`]). A session keeps the array it started with; writes
//! never touch an array once built.
//!
//! Nothing is persisted: the items are rebuilt from `by_space` after a
//! restart. Updates are applied after their sled transaction committed,
//! under the store's commit lock, so in commit order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use rapport_model::RecordId;
use rapport_proto::items::{ItemSet, SyncItem};
use rapport_proto::wire::WireId;

use crate::Result;

/// Changes since the array was built: the new digest, or `None` for a
/// document that left the space.
type Changes = BTreeMap<WireId, Option<[u8; 16]>>;

#[derive(Debug)]
enum Slot {
    /// The first session of the space reads `by_space`; writes meanwhile
    /// are noted here and applied on top of what it read.
    Loading(Changes),
    Ready {
        items: ItemSet,
        changes: Changes,
    },
}

/// The item sets of the shared spaces synced since the store opened.
#[derive(Debug, Default)]
pub(crate) struct ItemCache {
    spaces: Mutex<HashMap<RecordId, Slot>>,
    /// Held while a space is read from `by_space` (never by writers), so
    /// that two sessions starting together read it once.
    loading: Mutex<()>,
}

/// The array is rebuilt when the changes reach an eighth of it (and at
/// least this many).
const MIN_FOLD: usize = 1024;

impl ItemCache {
    fn spaces(&self) -> MutexGuard<'_, HashMap<RecordId, Slot>> {
        self.spaces.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current items of `space`; `read` gives them from `by_space`
    /// the first time.
    pub(crate) fn snapshot(
        &self,
        space: RecordId,
        read: impl FnOnce() -> Result<ItemSet>,
    ) -> Result<ItemSet> {
        if let Some(items) = self.ready(space) {
            return Ok(items);
        }
        let _loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(items) = self.ready(space) {
            return Ok(items);
        }
        self.spaces().insert(space, Slot::Loading(Changes::new()));
        let read = read();
        let mut spaces = self.spaces();
        let changes = match spaces.remove(&space) {
            Some(Slot::Loading(changes)) => changes,
            _ => Changes::new(),
        };
        let items = merge(&read?, &changes);
        spaces.insert(
            space,
            Slot::Ready {
                items: items.clone(),
                changes: Changes::new(),
            },
        );
        Ok(items)
    }

    /// The items of a space already read, with the changes folded in.
    fn ready(&self, space: RecordId) -> Option<ItemSet> {
        let mut spaces = self.spaces();
        let Some(Slot::Ready { items, changes }) = spaces.get_mut(&space) else {
            return None;
        };
        if !changes.is_empty() {
            *items = merge(items, changes);
            changes.clear();
        }
        Some(items.clone())
    }

    /// Whether no space's items are kept.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.spaces().is_empty()
    }

    /// Whether `space`'s items are kept (or being read).
    pub(crate) fn holds(&self, space: RecordId) -> bool {
        self.spaces().contains_key(&space)
    }

    /// Starts keeping the items of a space that has no document yet (one
    /// created, or joined, in this process), so that it never needs a
    /// read: every write to it is noted from the first. The caller knows
    /// it is empty and holds the commit lock.
    pub(crate) fn track_empty(&self, space: RecordId) {
        self.spaces().entry(space).or_insert_with(|| Slot::Ready {
            items: ItemSet::default(),
            changes: Changes::new(),
        });
    }

    /// Documents written or withdrawn, in commit order: (space, document,
    /// its item, or `None` if it left the space). Spaces not kept are
    /// skipped.
    pub(crate) fn note(
        &self,
        updates: impl IntoIterator<Item = (RecordId, WireId, Option<[u8; 16]>)>,
    ) {
        let mut spaces = self.spaces();
        if spaces.is_empty() {
            return;
        }
        for (space, record, digest) in updates {
            match spaces.get_mut(&space) {
                None => {}
                Some(Slot::Loading(changes)) => {
                    changes.insert(record, digest);
                }
                Some(Slot::Ready { items, changes }) => {
                    changes.insert(record, digest);
                    if changes.len() >= MIN_FOLD.max(items.len() / 8) {
                        *items = merge(items, changes);
                        changes.clear();
                    }
                }
            }
        }
    }
}

/// `items` with `changes` applied: one pass over both, in id order.
fn merge(items: &ItemSet, changes: &Changes) -> ItemSet {
    if changes.is_empty() {
        return items.clone();
    }
    let mut out = Vec::with_capacity(items.len() + changes.len());
    let mut rest = items.as_slice();
    for (record, digest) in changes {
        let at = rest.partition_point(|i| i.record < *record);
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at..];
        if rest.first().is_some_and(|i| i.record == *record) {
            rest = &rest[1..];
        }
        if let Some(digest) = digest {
            out.push(SyncItem {
                record: *record,
                digest: *digest,
            });
        }
    }
    out.extend_from_slice(rest);
    ItemSet::from_sorted(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(r: u8, d: u8) -> SyncItem {
        SyncItem {
            record: [r; 16],
            digest: [d; 16],
        }
    }

    #[test]
    fn a_merge_replaces_inserts_and_removes() {
        let items = ItemSet::from_sorted(vec![item(2, 0), item(4, 0), item(6, 0)]);
        let changes: Changes = [
            ([1; 16], Some([1; 16])),
            ([4; 16], Some([1; 16])),
            ([5; 16], None),
            ([6; 16], None),
            ([7; 16], Some([1; 16])),
        ]
        .into();
        assert_eq!(
            merge(&items, &changes).as_slice(),
            &[item(1, 1), item(2, 0), item(4, 1), item(7, 1)]
        );
    }

    #[test]
    fn writes_while_a_space_is_read_are_applied_on_top() {
        let cache = ItemCache::default();
        let space = RecordId::new(1, [0; 10]);
        let set = cache
            .snapshot(space, || {
                // A write that committed after the read saw the old value.
                cache.note([(space, [2; 16], Some([9; 16]))]);
                cache.note([(space, [3; 16], None)]);
                Ok(ItemSet::from_sorted(vec![item(2, 0), item(3, 0)]))
            })
            .expect("snapshot");
        assert_eq!(set.as_slice(), &[item(2, 9)]);
        // A snapshot is not touched by later writes.
        cache.note([(space, [1; 16], Some([1; 16]))]);
        assert_eq!(set.as_slice(), &[item(2, 9)]);
        let again = cache
            .snapshot(space, || panic!("read twice"))
            .expect("snapshot");
        assert_eq!(again.as_slice(), &[item(1, 1), item(2, 9)]);
        // No write since: the very same snapshot.
        let third = cache
            .snapshot(space, || panic!("read twice"))
            .expect("snapshot");
        assert!(third.same_snapshot(&again));
    }

    #[test]
    fn a_failed_read_leaves_nothing_behind() {
        let cache = ItemCache::default();
        let space = RecordId::new(1, [0; 10]);
        let failed = cache.snapshot(space, || Err(crate::StoreError::Corrupt("test".into())));
        assert!(failed.is_err());
        assert!(cache.is_empty());
        let set = cache
            .snapshot(space, || Ok(ItemSet::from_sorted(vec![item(1, 1)])))
            .expect("snapshot");
        assert_eq!(set.len(), 1);
    }
}
