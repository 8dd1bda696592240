//! Instant search: every live record by its name, emails, phones, domains
//! and tags, answered from memory while the user types.
//!
//! The index is plain data: [`SearchIndex::put`] and
//! [`SearchIndex::remove`] keep it in step with the store (the web UI feeds
//! it from [`rapport_store::Store::watch`]), and [`SearchIndex::query`]
//! scans it. A scan of one flat string per record is a few milliseconds at
//! 100k records (see `rapport bench search`), which keeps the index small
//! and its updates trivial; a term tree would only pay off far beyond that.

use std::collections::HashMap;

use rapport_model::{FieldType, FieldValue, Kind, RecordId, RecordView, SpaceId};

/// One record as search sees it.
#[derive(Debug, Clone)]
struct Entry {
    id: RecordId,
    kind: Kind,
    space: SpaceId,
    title: String,
    /// Lower-cased title, for ranking.
    title_lc: String,
    /// Where the record's terms are in [`SearchIndex::terms`]: every
    /// searchable term, lower-cased, each preceded by a space; the title's
    /// terms first, up to `title_end`.
    start: usize,
    title_end: usize,
    end: usize,
    /// The record's newest change, for ranking equals.
    updated: i64,
}

/// A record that matched, with what to show for it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hit {
    pub id: RecordId,
    pub kind: Kind,
    pub space: SpaceId,
    pub title: String,
    /// The matching value when it is not the title (an email, a phone...).
    pub detail: Option<String>,
}

/// The answer to one query.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Found {
    pub hits: Vec<Hit>,
    /// How many records matched in all (more than `hits` when cut).
    pub total: usize,
}

/// All live records' searchable terms, in memory.
#[derive(Debug, Default)]
pub struct SearchIndex {
    entries: Vec<Entry>,
    /// Every record's terms back to back. One buffer read in order rather
    /// than one allocation per record: a scan of 100k records is bound by
    /// memory access, and this keeps it sequential.
    terms: String,
    /// Bytes of `terms` no entry points at any more (replaced or removed).
    dead: usize,
    slots: HashMap<RecordId, usize>,
    /// The searchable values of each record, as shown, for `Hit::detail`.
    values: HashMap<RecordId, Vec<String>>,
}

impl SearchIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records are searchable.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds or replaces a record; a deleted one is removed.
    pub fn put(&mut self, view: &RecordView) {
        if view.deleted {
            self.remove(view.id);
            return;
        }
        let title = view.title();
        let values = searchable_values(view);
        if let Some(&slot) = self.slots.get(&view.id) {
            let old = &self.entries[slot];
            self.dead += old.end - old.start;
        }
        let start = self.terms.len();
        push_terms(&mut self.terms, &title);
        let title_end = self.terms.len();
        for v in &values {
            push_terms(&mut self.terms, v);
        }
        let end = self.terms.len();
        let entry = Entry {
            id: view.id,
            kind: view.kind,
            space: view.space,
            title_lc: title.to_lowercase(),
            title,
            start,
            title_end,
            end,
            updated: view.updated,
        };
        self.values.insert(view.id, values);
        match self.slots.get(&view.id) {
            Some(&slot) => self.entries[slot] = entry,
            None => {
                self.slots.insert(view.id, self.entries.len());
                self.entries.push(entry);
            }
        }
        self.compact_if_sparse();
    }

    /// Rewrites `terms` in entry order once most of it is dead.
    fn compact_if_sparse(&mut self) {
        if self.dead < 4096 || self.dead * 2 < self.terms.len() {
            return;
        }
        let mut terms = String::with_capacity(self.terms.len() - self.dead);
        for e in &mut self.entries {
            let start = terms.len();
            terms.push_str(&self.terms[e.start..e.end]);
            e.title_end = start + (e.title_end - e.start);
            e.end = start + (e.end - e.start);
            e.start = start;
        }
        self.terms = terms;
        self.dead = 0;
    }

    fn haystack(&self, e: &Entry) -> &str {
        &self.terms[e.start..e.end]
    }

    pub fn remove(&mut self, id: RecordId) {
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        self.values.remove(&id);
        let gone = self.entries.swap_remove(slot);
        self.dead += gone.end - gone.start;
        if let Some(moved) = self.entries.get(slot) {
            self.slots.insert(moved.id, slot);
        }
        self.compact_if_sparse();
    }

    /// The best `limit` records matching every word of `query` (each word
    /// must begin a term: "ac co" finds "Acme Corp"), best first: title
    /// equal to the query, then title starting with it, then other title
    /// matches, then matches in other fields; newer first among equals.
    pub fn query(&self, query: &str, limit: usize) -> Found {
        let q = query.trim().to_lowercase();
        let words: Vec<Word> = q.split_whitespace().map(Word::new).collect();
        if words.is_empty() {
            return Found::default();
        }
        let mut matched: Vec<(u8, i64, usize)> = Vec::new();
        for (slot, e) in self.entries.iter().enumerate() {
            let haystack = self.haystack(e);
            if words.iter().all(|w| w.found_in(haystack)) {
                let title_terms = &self.terms[e.start..e.title_end];
                matched.push((rank(e, title_terms, &q, &words), -e.updated, slot));
            }
        }
        let total = matched.len();
        let cut = limit.min(total);
        if cut < total && cut > 0 {
            matched.select_nth_unstable(cut - 1);
            matched.truncate(cut);
        }
        matched.sort_unstable();
        matched.truncate(limit);
        let hits = matched
            .into_iter()
            .map(|(r, _, slot)| {
                let e = &self.entries[slot];
                let detail = if r < TITLE_WORDS {
                    None
                } else {
                    self.values.get(&e.id).and_then(|vs| {
                        vs.iter()
                            .find(|v| {
                                let mut terms = String::new();
                                push_terms(&mut terms, v);
                                words.iter().any(|w| w.found_in(&terms))
                            })
                            .cloned()
                    })
                };
                Hit {
                    id: e.id,
                    kind: e.kind,
                    space: e.space,
                    title: e.title.clone(),
                    detail,
                }
            })
            .collect();
        Found { hits, total }
    }
}

const TITLE_EQUAL: u8 = 0;
const TITLE_PREFIX: u8 = 1;
const TITLE_WORDS: u8 = 2;
const OTHER_FIELDS: u8 = 3;

fn rank(e: &Entry, title_terms: &str, q: &str, words: &[Word]) -> u8 {
    if e.title_lc == q {
        TITLE_EQUAL
    } else if e.title_lc.starts_with(q) {
        TITLE_PREFIX
    } else {
        if words.iter().all(|w| w.found_in(title_terms)) {
            TITLE_WORDS
        } else {
            OTHER_FIELDS
        }
    }
}

/// One word of a query: its text, and its digits when it looks like part of
/// a phone number ("+49 (30)" finds 4930...). The searchers are built once
/// per query, not once per record: that is most of a scan's cost otherwise.
#[derive(Debug)]
struct Word {
    needle: memchr::memmem::Finder<'static>,
    digits: Option<memchr::memmem::Finder<'static>>,
}

impl Word {
    fn new(w: &str) -> Self {
        let digits: String = w.chars().filter(char::is_ascii_digit).collect();
        let phone_like = !digits.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_digit() || "+-()./".contains(c));
        let finder = |s: String| memchr::memmem::Finder::new(s.as_bytes()).into_owned();
        Word {
            needle: finder(format!(" {w}")),
            digits: (phone_like && digits != w).then(|| finder(format!(" {digits}"))),
        }
    }

    fn found_in(&self, haystack: &str) -> bool {
        let h = haystack.as_bytes();
        self.needle.find(h).is_some() || self.digits.as_ref().is_some_and(|d| d.find(h).is_some())
    }
}

/// The values search looks at besides the title: emails, phones, domains,
/// web addresses and tags.
fn searchable_values(view: &RecordView) -> Vec<String> {
    let mut out = Vec::new();
    for def in view.kind.fields() {
        let wanted = matches!(
            def.ty,
            FieldType::Email
                | FieldType::Emails
                | FieldType::Phone
                | FieldType::Phones
                | FieldType::Domain
                | FieldType::Url
                | FieldType::Tags
        );
        if !wanted {
            continue;
        }
        match view.get(def.name) {
            Some(FieldValue::Text(s)) => out.push(s.clone()),
            Some(FieldValue::List(l)) => out.extend(l.iter().cloned()),
            _ => {}
        }
    }
    out
}

/// Appends the terms of `value`, each after a space: the whole value, its
/// words, the parts of an email or web address, and a phone's digits.
fn push_terms(haystack: &mut String, value: &str) {
    let lc = value.to_lowercase();
    haystack.push(' ');
    haystack.push_str(&lc);
    for word in lc.split(|c: char| !c.is_alphanumeric()) {
        if !word.is_empty() && word.len() < lc.len() {
            haystack.push(' ');
            haystack.push_str(word);
        }
    }
    let digits: String = lc.chars().filter(char::is_ascii_digit).collect();
    if digits.len() >= 3 && digits.len() * 2 > lc.len() {
        haystack.push(' ');
        haystack.push_str(&digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn record(n: u64, kind: Kind, fields: &[(&str, FieldValue)]) -> RecordView {
        RecordView {
            id: RecordId::new(n, [n as u8; 10]),
            kind,
            space: SpaceId::Private,
            deleted: false,
            merged_into: None,
            updated: n as i64,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
            conflicts: BTreeMap::new(),
        }
    }

    fn text(s: &str) -> FieldValue {
        FieldValue::Text(s.into())
    }

    fn list(items: &[&str]) -> FieldValue {
        FieldValue::List(items.iter().map(|s| s.to_string()).collect())
    }

    fn titles(found: &Found) -> Vec<&str> {
        found.hits.iter().map(|h| h.title.as_str()).collect()
    }

    fn sample() -> SearchIndex {
        let mut index = SearchIndex::new();
        index.put(&record(
            1,
            Kind::Company,
            &[("name", text("Acme Corp")), ("domain", text("acme.com"))],
        ));
        index.put(&record(
            2,
            Kind::Person,
            &[
                ("name", text("Jane Doe")),
                ("emails", list(&["jane@initech.io"])),
                ("phones", list(&["+49 30 1234567"])),
            ],
        ));
        index.put(&record(
            3,
            Kind::Deal,
            &[("title", text("Acme renewal")), ("company", text("x"))],
        ));
        index.put(&record(
            4,
            Kind::Ticket,
            &[("title", text("Login broken at Globex"))],
        ));
        index
    }

    #[test]
    fn finds_by_name_email_phone_domain_and_title_words() {
        let index = sample();
        assert_eq!(
            titles(&index.query("acme", 10)),
            ["Acme renewal", "Acme Corp"]
        );
        assert_eq!(titles(&index.query("jane@init", 10)), ["Jane Doe"]);
        assert_eq!(titles(&index.query("initech", 10)), ["Jane Doe"]);
        assert_eq!(titles(&index.query("+49 30 123", 10)), ["Jane Doe"]);
        assert_eq!(titles(&index.query("4930123", 10)), ["Jane Doe"]);
        assert_eq!(titles(&index.query("acme.com", 10)), ["Acme Corp"]);
        assert_eq!(titles(&index.query("glob", 10)), ["Login broken at Globex"]);
        assert_eq!(titles(&index.query("ac co", 10)), ["Acme Corp"]);
        // Words must begin a term: "cme" is inside "acme", not at a start.
        assert!(index.query("cme", 10).hits.is_empty());
        assert!(index.query("   ", 10).hits.is_empty());
    }

    #[test]
    fn ranks_exact_then_prefix_then_title_words_then_other_fields() {
        let mut index = sample();
        index.put(&record(
            5,
            Kind::Person,
            &[("name", text("Bob")), ("emails", list(&["bob@acme.com"]))],
        ));
        index.put(&record(6, Kind::Company, &[("name", text("Acme"))]));
        let found = index.query("acme", 10);
        assert_eq!(
            titles(&found),
            ["Acme", "Acme renewal", "Acme Corp", "Bob"],
            "exact, then prefix (newer first), then another field"
        );
        assert_eq!(found.hits[3].detail.as_deref(), Some("bob@acme.com"));
        assert_eq!(found.hits[0].detail, None);
    }

    #[test]
    fn follows_edits_deletes_and_removals_and_cuts_at_the_limit() {
        let mut index = sample();
        let mut renamed = record(1, Kind::Company, &[("name", text("Umbrella"))]);
        index.put(&renamed);
        assert_eq!(titles(&index.query("acme", 10)), ["Acme renewal"]);
        assert_eq!(titles(&index.query("umbr", 10)), ["Umbrella"]);
        renamed.deleted = true;
        index.put(&renamed);
        assert!(index.query("umbr", 10).hits.is_empty());
        index.remove(RecordId::new(2, [2; 10]));
        assert!(index.query("jane", 10).hits.is_empty());
        // The entry moved into the freed slot is still found and updatable.
        assert_eq!(index.len(), 2);
        assert_eq!(titles(&index.query("glob", 10)), ["Login broken at Globex"]);
        for n in 10..40 {
            index.put(&record(
                n,
                Kind::Company,
                &[("name", text(&format!("Acme {n}")))],
            ));
        }
        // Rewriting records many times leaves the term buffer bounded and
        // every answer right.
        for round in 0..500 {
            for n in 10..40 {
                let name = format!("Acme {n} r{round}");
                index.put(&record(n, Kind::Company, &[("name", text(&name))]));
            }
        }
        assert!(index.terms.len() < 8 * 4096, "{} bytes", index.terms.len());
        assert_eq!(index.query("r499", 50).total, 30);
        assert_eq!(index.query("r498", 50).total, 0);
        assert_eq!(titles(&index.query("glob", 10)), ["Login broken at Globex"]);
        let found = index.query("acme", 5);
        assert_eq!(found.total, 31);
        assert_eq!(found.hits.len(), 5);
        assert_eq!(
            found.hits[0].title, "Acme 39 r499",
            "newest prefix match first"
        );
    }
}
