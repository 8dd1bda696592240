//! The field index: every value of every field of every record, so that
//! a filter or a sort on any field (built-in or custom) reads only the
//! records it returns.
//!
//! One key per value (a list field: one per item), in the `by_field` tree:
//!
//! ```text
//! kind 0x00 field 0x00 'n' <16 bytes: the number, order-preserving> 0x00 <record id, 16 bytes>
//! kind 0x00 field 0x00 't' <the text, lower case, at most 64 bytes>  0x00 <record id, 16 bytes>
//! ```
//!
//! The index knows no schema (the store never knows what a field means):
//! a value that reads as a decimal number (`1200.50`, `-3`, a percentage,
//! an amount of money `1200.50 EUR`, a yes/no as 0/1) is a number and
//! sorts as one, before every text; any other value is its text in lower
//! case, compared bytewise. Texts longer than 64 bytes are indexed by
//! their first 64: a lookup returns candidates that the caller checks
//! against the record, as it checks every filter.

use rapport_model::{Decimal, FieldValue, Kind, RecordId, RecordView};

/// The bytes of a text a key keeps.
const TEXT_BYTES: usize = 64;

/// One indexed value: what a key sorts by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Item {
    /// A decimal, as ten-thousandths.
    Number(i128),
    /// Lower case, at most 64 bytes, no NUL.
    Text(Vec<u8>),
}

impl Item {
    /// The item a text value is indexed as.
    pub fn of_text(s: &str) -> Item {
        if let Some(n) = number(s) {
            return Item::Number(n);
        }
        let lower = s.to_lowercase().replace('\0', "");
        Item::Text(lower.as_bytes()[..cut(&lower)].to_vec())
    }

    /// The items a value is indexed as (a list: one per item).
    pub fn of(value: &FieldValue) -> Vec<Item> {
        match value {
            FieldValue::Flag(b) => vec![Item::Number(i128::from(*b) * SCALE)],
            FieldValue::Int(i) => vec![Item::Number(i128::from(*i) * SCALE)],
            FieldValue::Text(s) => vec![Item::of_text(s)],
            FieldValue::List(l) => l.iter().map(|s| Item::of_text(s)).collect(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Item::Number(n) => {
                out.push(b'n');
                out.extend_from_slice(&((*n as u128) ^ (1 << 127)).to_be_bytes());
            }
            Item::Text(t) => {
                out.push(b't');
                out.extend_from_slice(t);
            }
        }
    }
}

const SCALE: i128 = 10_000;

/// A text that is a decimal number, optionally followed by a currency
/// code (`1200.50 EUR`), as ten-thousandths.
fn number(s: &str) -> Option<i128> {
    let s = s.trim();
    let amount = match s.rsplit_once(' ') {
        Some((a, code)) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) => a,
        _ => s,
    };
    // Only plain decimals: no thousands separators (`1,200` is text, as a
    // stored value never has them).
    let plain = !amount.is_empty()
        && amount
            .strip_prefix('-')
            .unwrap_or(amount)
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.')
        && amount.bytes().any(|b| b.is_ascii_digit());
    if !plain {
        return None;
    }
    amount.parse::<Decimal>().ok().map(Decimal::ten_thousandths)
}

/// `kind 0 field 0`: every key of one field of one kind starts so.
pub fn field_prefix(kind: Kind, field: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(kind.as_str().len() + field.len() + 2);
    key.extend_from_slice(kind.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(field.replace('\0', "").as_bytes());
    key.push(0);
    key
}

/// Every key with exactly this value: `field_prefix`, the item, 0.
pub fn value_prefix(kind: Kind, field: &str, item: &Item) -> Vec<u8> {
    let mut key = field_prefix(kind, field);
    item.encode(&mut key);
    key.push(0);
    key
}

/// Every key whose text begins with `text` (lower-cased, and cut where
/// a key's text is cut: a longer prefix finds the values sharing its
/// first 64 bytes, for the caller to check).
pub fn text_prefix(kind: Kind, field: &str, text: &str) -> Vec<u8> {
    let mut key = field_prefix(kind, field);
    key.push(b't');
    let lower = text.to_lowercase().replace('\0', "");
    key.extend_from_slice(&lower.as_bytes()[..cut(&lower)]);
    key
}

/// Where a key cuts a lower-case text: at most 64 bytes, on a character.
fn cut(lower: &str) -> usize {
    let mut end = lower.len().min(TEXT_BYTES);
    while !lower.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Every key of one sort of item (`'n'` numbers or `'t'` texts) of a
/// field: `[start, end)`.
pub fn sort_range(kind: Kind, field: &str, numbers: bool) -> (Vec<u8>, Vec<u8>) {
    let mut start = field_prefix(kind, field);
    let mut end = start.clone();
    start.push(if numbers { b'n' } else { b't' });
    end.push(if numbers { b'n' + 1 } else { b't' + 1 });
    (start, end)
}

/// Whether a text could begin a value the index keeps as a number
/// (`030` begins `0301234`, kept as the number 301234): a prefix search
/// must then look at the numbers too.
pub fn could_begin_number(text: &str) -> bool {
    // An amount, then perhaps a space and the start of its currency code
    // (`5000 e` begins `5000 EUR`).
    let (amount, code) = text.rsplit_once(' ').unwrap_or((text, ""));
    code.len() <= 3
        && code.bytes().all(|b| b.is_ascii_alphabetic())
        && amount
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// The text a text key keeps (lower case, at most 64 bytes), `None` for
/// a number: a search for text inside values reads it from the key.
pub fn key_text(key: &[u8], prefix_len: usize) -> Option<&[u8]> {
    let rest = key.get(prefix_len..key.len().checked_sub(17)?)?;
    rest.strip_prefix(b"t")
}

/// Whether a key's text may have been cut (its value was longer than
/// the index keeps): a search for text inside it must read the record.
pub fn may_be_cut(text: &[u8]) -> bool {
    text.len() + 3 >= TEXT_BYTES
}

/// The record a key indexes: its last 16 bytes.
pub fn id_of(key: &[u8]) -> Option<RecordId> {
    let at = key.len().checked_sub(16)?;
    let bytes: [u8; 16] = key[at..].try_into().ok()?;
    Some(RecordId::from_bytes(bytes))
}

/// Every key of a record's values.
pub fn keys(view: &RecordView) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // No field has a longer name (a custom one has at most 40 bytes): a
    // value a peer's record holds under one is kept, never indexed.
    for (field, value) in view.fields.iter().filter(|(f, _)| f.len() <= 64) {
        for item in Item::of(value) {
            let mut key = value_prefix(view.kind, field, &item);
            key.extend_from_slice(&view.id.to_bytes());
            out.push(key);
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_as_numbers_before_texts() {
        let mut items = [
            Item::of_text("100"),
            Item::of_text("42"),
            Item::of_text("-3.5"),
            Item::of_text("1200.50 EUR"),
            Item::of_text("Bob"),
            Item::of_text("alice"),
            Item::of_text("2026-12-01"),
        ];
        items.sort();
        let mut keys: Vec<Vec<u8>> = items
            .iter()
            .map(|i| value_prefix(Kind::Company, "x", i))
            .collect();
        let sorted = keys.clone();
        keys.sort();
        assert_eq!(keys, sorted, "keys sort as their items");
        assert_eq!(
            items[..4],
            [
                Item::Number(-35_000),
                Item::Number(420_000),
                Item::Number(1_000_000),
                Item::Number(12_005_000),
            ]
        );
        assert_eq!(items[4], Item::Text(b"2026-12-01".to_vec()));
        assert_eq!(items[6], Item::Text(b"bob".to_vec()));
        assert_eq!(Item::of_text("1,200"), Item::Text(b"1,200".to_vec()));
    }

    #[test]
    fn a_field_name_no_field_has_is_kept_but_not_indexed() {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("seats".to_string(), FieldValue::Text("12".into()));
        fields.insert("a".repeat(60_000), FieldValue::Text("x".into()));
        let view = RecordView {
            id: RecordId::from_bytes([1; 16]),
            kind: Kind::Company,
            space: Default::default(),
            deleted: false,
            merged_into: None,
            updated: 0,
            fields,
            conflicts: Default::default(),
        };
        let keys = keys(&view);
        assert_eq!(keys.len(), 1);
        assert!(keys[0].starts_with(&field_prefix(Kind::Company, "seats")));
    }

    #[test]
    fn long_texts_keep_their_first_64_bytes_on_a_char_boundary() {
        let long = "é".repeat(40);
        let Item::Text(t) = Item::of_text(&long) else {
            panic!("a text")
        };
        assert_eq!(t.len(), 64);
        assert!(std::str::from_utf8(&t).is_ok());
    }
}
