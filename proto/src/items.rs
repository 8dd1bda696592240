//! The items two nodes reconcile when they catch up on a space: one per
//! document, its id and a digest of its heads. Both sides must compute an
//! item the same way, so its definition lives with the wire format; the
//! store keeps the items of a synced space in memory (made on every write)
//! and the sync crate reconciles them, without either depending on the other.

use std::sync::{Arc, OnceLock};

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
#[derive(Debug, Clone, Default)]
pub struct ItemSet {
    items: Arc<[SyncItem]>,
    /// `sums[i]`: the sum of the ids of the first `i` items, made the
    /// first time a range is summed and shared by every clone, so that a
    /// range's sum (what a negentropy fingerprint hashes) costs two
    /// lookups instead of a pass over the range.
    sums: Arc<OnceLock<Box<[IdSum]>>>,
}

/// A sum of 32-byte ids as negentropy adds them: four little-endian
/// 64-bit lanes with carry, modulo 2^256.
type IdSum = [u64; 4];

impl PartialEq for ItemSet {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items
    }
}

impl Eq for ItemSet {}

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
        Self::from_sorted(items)
    }

    /// Items already sorted by id, one per id (checked in debug builds).
    pub fn from_sorted(items: Vec<SyncItem>) -> Self {
        debug_assert!(items.is_sorted_by(|a, b| a.record < b.record));
        ItemSet {
            items: items.into(),
            sums: Arc::default(),
        }
    }

    pub fn as_slice(&self) -> &[SyncItem] {
        &self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether `other` is this very snapshot (not only equal to it).
    pub fn same_snapshot(&self, other: &ItemSet) -> bool {
        Arc::ptr_eq(&self.items, &other.items)
    }

    /// The sum of the ids ([`SyncItem::id`]) of the items in
    /// `begin..end`, as 32 little-endian bytes: negentropy's accumulator
    /// over that range. `None` for a range outside the set. The first call
    /// on a snapshot makes its prefix sums (one pass); every call after
    /// that costs two lookups.
    pub fn id_sum(&self, begin: usize, end: usize) -> Option<[u8; 32]> {
        if begin > end || end > self.items.len() {
            return None;
        }
        let sums = self.sums.get_or_init(|| {
            let mut sums = Vec::with_capacity(self.items.len() + 1);
            let mut total: IdSum = [0; 4];
            sums.push(total);
            for item in self.items.iter() {
                total = add(total, lanes(&item.id()));
                sums.push(total);
            }
            sums.into_boxed_slice()
        });
        let diff = sub(sums[end], sums[begin]);
        let mut out = [0u8; 32];
        for (chunk, lane) in out.chunks_exact_mut(8).zip(diff) {
            chunk.copy_from_slice(&lane.to_le_bytes());
        }
        Some(out)
    }
}

fn lanes(id: &[u8; 32]) -> IdSum {
    let mut out = [0u64; 4];
    for (lane, chunk) in out.iter_mut().zip(id.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *lane = u64::from_le_bytes(b);
    }
    out
}

fn add(a: IdSum, b: IdSum) -> IdSum {
    let mut out = [0u64; 4];
    let mut carry = false;
    for i in 0..4 {
        let (s, c1) = a[i].overflowing_add(b[i]);
        let (s, c2) = s.overflowing_add(carry as u64);
        out[i] = s;
        carry = c1 || c2;
    }
    out
}

fn sub(a: IdSum, b: IdSum) -> IdSum {
    let mut out = [0u64; 4];
    let mut borrow = false;
    for i in 0..4 {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(borrow as u64);
        out[i] = d;
        borrow = b1 || b2;
    }
    out
}

impl std::ops::Deref for ItemSet {
    type Target = [SyncItem];
    fn deref(&self) -> &[SyncItem] {
        &self.items
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

    /// The sum of a range, the slow way and independently of the lanes:
    /// every id added byte by byte, little-endian, with carry, mod 2^256.
    fn summed(items: &[SyncItem]) -> [u8; 32] {
        let mut total = [0u8; 32];
        for item in items {
            let mut carry = 0u16;
            for (t, b) in total.iter_mut().zip(item.id()) {
                let s = *t as u16 + b as u16 + carry;
                *t = s as u8;
                carry = s >> 8;
            }
        }
        total
    }

    #[test]
    fn a_range_sum_from_prefix_sums_is_the_sum_of_its_ids() {
        // Seeded ids and digests, many with high bytes set so that lanes
        // carry and differences borrow.
        let mut state = 0x5eed_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let items: Vec<SyncItem> = (0..300)
            .map(|_| {
                let mut record = [0u8; 16];
                let mut digest = [0u8; 16];
                record[..8].copy_from_slice(&next().to_be_bytes());
                record[8..].copy_from_slice(&next().to_be_bytes());
                digest[..8].copy_from_slice(&(next() | 0xff00_0000_0000_0000).to_le_bytes());
                digest[8..].copy_from_slice(&next().to_le_bytes());
                SyncItem { record, digest }
            })
            .collect();
        let set = ItemSet::collect(items);
        let n = set.len();
        for _ in 0..2000 {
            let (a, b) = ((next() as usize) % (n + 1), (next() as usize) % (n + 1));
            let (begin, end) = (a.min(b), a.max(b));
            assert_eq!(
                set.id_sum(begin, end),
                Some(summed(&set[begin..end])),
                "{begin}..{end}"
            );
        }
        assert_eq!(set.id_sum(0, 0), Some([0; 32]));
        assert_eq!(set.id_sum(0, n), Some(summed(&set)));
        assert_eq!(set.id_sum(3, 2), None);
        assert_eq!(set.id_sum(0, n + 1), None);
        // Clones share the sums; an equal set made apart is still equal.
        assert!(set.clone().same_snapshot(&set));
        assert_eq!(ItemSet::from_sorted(set.to_vec()), set);
    }

    #[test]
    fn a_collected_set_is_sorted_with_the_last_item_of_each_id() {
        let item = |r: u8, h: u8| SyncItem::new([r; 16], &[[h; 32]]);
        let set = ItemSet::collect([item(3, 1), item(1, 1), item(3, 2), item(2, 1)]);
        assert_eq!(set.as_slice(), &[item(1, 1), item(2, 1), item(3, 2)]);
    }
}
