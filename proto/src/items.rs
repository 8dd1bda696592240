//! The items two nodes reconcile when they catch up on a space: one per
//! document, its id and a digest of its heads. Both sides must compute an
//! item the same way, so its definition lives with the wire format; the
//! store keeps the items of a synced space in memory (made on every write)
//! and the sync crate reconciles them, without either depending on the other.

use std::sync::Arc;

use crate::wire::{Hash, WireId};

/// One document's reconciliation item: its id and the first 16 bytes of
/// the SHA-256 of its sorted heads, so that any change to the document
/// changes its item. 32 bytes; ordered by id, which starts with the
/// document's creation time (the ULID layout), so that this order is the
/// order negentropy sorts items in: creation time, then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncItem {
    pub record: WireId,
    pub digest: [u8; 16],
}

impl SyncItem {
    /// The item of document `record` with heads `heads` (in any order).
    pub fn new(record: WireId, heads: &[Hash]) -> Self {
        SyncItem {
            record,
            digest: heads_digest(heads),
        }
    }

    /// Creation time in milliseconds since the Unix epoch: the id's first
    /// 48 bits.
    pub fn timestamp(&self) -> u64 {
        let mut t = [0u8; 8];
        t[2..].copy_from_slice(&self.record[..6]);
        u64::from_be_bytes(t)
    }

    /// The 32-byte negentropy id: the document's id, then the digest.
    pub fn id(&self) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[..16].copy_from_slice(&self.record);
        id[16..].copy_from_slice(&self.digest);
        id
    }
}

/// The first 16 bytes of the SHA-256 of `heads`, sorted.
pub fn heads_digest(heads: &[Hash]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    if heads.is_sorted() {
        for head in heads {
            h.update(head);
        }
    } else {
        let mut sorted = heads.to_vec();
        sorted.sort_unstable();
        for head in &sorted {
            h.update(head);
        }
    }
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The items of one space, sorted by id with one item per id: an
/// immutable snapshot, cheap to clone and to share with a session while
/// the space is written to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemSet(Arc<[SyncItem]>);

impl ItemSet {
    /// Items in any order; of several with the same id, the last one.
    pub fn collect(items: impl IntoIterator<Item = SyncItem>) -> Self {
        let mut items: Vec<SyncItem> = items.into_iter().collect();
        if !items.is_sorted_by(|a, b| a.record < b.record) {
            // Stable, so that the last of equal ids stays last.
            items.sort_by_key(|i| i.record);
            let mut deduped: Vec<SyncItem> = Vec::with_capacity(items.len());
            for item in items {
                match deduped.last_mut() {
                    Some(last) if last.record == item.record => *last = item,
                    _ => deduped.push(item),
                }
            }
            items = deduped;
        }
        ItemSet(items.into())
    }

    /// Items already sorted by id, one per id (checked in debug builds).
    pub fn from_sorted(items: Vec<SyncItem>) -> Self {
        debug_assert!(items.is_sorted_by(|a, b| a.record < b.record));
        ItemSet(items.into())
    }

    pub fn as_slice(&self) -> &[SyncItem] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `other` is this very snapshot (not only equal to it).
    pub fn same_snapshot(&self, other: &ItemSet) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for ItemSet {
    type Target = [SyncItem];
    fn deref(&self) -> &[SyncItem] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_ignores_the_order_of_heads() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(heads_digest(&[a, b]), heads_digest(&[b, a]));
        assert_ne!(heads_digest(&[a, b]), heads_digest(&[a]));
    }

    #[test]
    fn the_timestamp_is_the_ids_first_48_bits() {
        let mut record = [0xffu8; 16];
        record[..6].copy_from_slice(&[0, 0, 1, 2, 3, 4]);
        let item = SyncItem::new(record, &[]);
        assert_eq!(item.timestamp(), 0x0102_0304);
        assert_eq!(item.id()[..16], record);
        assert_eq!(item.id()[16..], item.digest);
    }

    #[test]
    fn a_collected_set_is_sorted_with_the_last_item_of_each_id() {
        let item = |r: u8, h: u8| SyncItem::new([r; 16], &[[h; 32]]);
        let set = ItemSet::collect([item(3, 1), item(1, 1), item(3, 2), item(2, 1)]);
        assert_eq!(set.as_slice(), &[item(1, 1), item(2, 1), item(3, 2)]);
    }
}
