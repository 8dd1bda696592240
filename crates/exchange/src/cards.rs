//! vCard files (2.1, 3.0 and 4.0: what phones, Apple Contacts, Google,
//! Outlook, Thunderbird and Nextcloud write) in and out. Reading is
//! `calcard`'s, which unfolds lines, decodes QUOTED-PRINTABLE and
//! charsets and is tested on hundreds of real files; this module only
//! says which property fills which column.
//!
//! A card becomes a [`Row`] under [`CARD_COLUMNS`], so an address book
//! goes through the same column mapping, checks, matching and error file
//! as a CSV export of it. Each card is parsed on its own: one bad card is
//! a row with a problem, the others import.

use calcard::vcard::{VCard, VCardEntry, VCardProperty, VCardValue};
use calcard::{Entry, Parser};
use std::collections::HashMap;

use rapport_model::{FieldValue, Kind, RecordId, RecordView};

use crate::table::Row;

/// The columns a card fills, named so that the column mapping knows them.
pub const CARD_COLUMNS: [&str; 14] = [
    "UID",
    "Full Name",
    "First Name",
    "Middle Name",
    "Last Name",
    "Organization",
    "Job Title",
    "E-mail",
    "Phone",
    "Address",
    "Website",
    "Notes",
    "Categories",
    "Birthday",
];

/// The cards of `text` as rows, in file order; text between cards is
/// ignored. `line` is where each card begins.
pub fn card_rows(text: &str) -> Vec<Row> {
    components(text, "VCARD")
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let number = i as u64 + 1;
            let mut row = Row {
                number,
                line: chunk.line,
                cells: vec![String::new(); CARD_COLUMNS.len()],
                problem: None,
            };
            if !chunk.ended {
                row.problem = Some(
                    "the card has no END:VCARD: the file looks cut short; export it again".into(),
                );
                return row;
            }
            match Parser::new(chunk.text).entry() {
                Entry::VCard(card) => row.cells = card_cells(&card),
                other => row.problem = Some(format!("this card cannot be read ({})", what(&other))),
            }
            row
        })
        .collect()
}

/// A component of a text calendar or address book: its text (from BEGIN
/// to END), the line it starts on, and whether its END was found.
#[derive(Debug)]
pub(crate) struct Chunk<'a> {
    pub text: &'a str,
    pub line: u64,
    pub ended: bool,
}

/// The top-level `BEGIN:{name}` … `END:{name}` blocks of `text` (nested
/// ones, such as a 2.1 card's AGENT, stay inside their parent).
pub(crate) fn components<'a>(text: &'a str, name: &str) -> Vec<Chunk<'a>> {
    let mut out = Vec::new();
    let mut start: Option<(usize, u64)> = None;
    let mut depth = 0usize;
    let mut at = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line
            .trim_start_matches('\u{feff}')
            .trim_end_matches(['\r', '\n'])
            .trim();
        let is = |verb: &str| {
            bare.split_once(':').is_some_and(|(v, n)| {
                v.trim().eq_ignore_ascii_case(verb) && n.trim().eq_ignore_ascii_case(name)
            })
        };
        if is("BEGIN") {
            if depth == 0 {
                start = Some((at, i as u64 + 1));
            }
            depth += 1;
        } else if is("END") && depth > 0 {
            depth -= 1;
            if depth == 0
                && let Some((from, line_no)) = start.take()
            {
                out.push(Chunk {
                    text: &text[from..at + line.len()],
                    line: line_no,
                    ended: true,
                });
            }
        }
        at += line.len();
    }
    if let Some((from, line)) = start {
        out.push(Chunk {
            text: &text[from..],
            line,
            ended: false,
        });
    }
    out
}

/// What a parser entry that is not a card or calendar says, in words.
pub(crate) fn what(entry: &Entry) -> String {
    match entry {
        Entry::InvalidLine(l) => format!("a line it cannot read: {}", clip(l)),
        Entry::UnexpectedComponentEnd { expected, found } => {
            format!(
                "END:{} where END:{} was expected",
                found.as_str(),
                expected.as_str()
            )
        }
        Entry::UnterminatedComponent(c) => format!("{c} is never ended"),
        Entry::TooManyComponents => "too many nested components".into(),
        Entry::Eof => "it is empty".into(),
        Entry::VCard(_) => "a vCard".into(),
        Entry::ICalendar(_) => "a calendar".into(),
        _ => "an unknown entry".into(),
    }
}

fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn card_cells(card: &VCard) -> Vec<String> {
    let first = |p: VCardProperty| card.property(&p).map(text_of).unwrap_or_default();
    let all = |p: VCardProperty| -> Vec<String> {
        card.properties(&p)
            .map(text_of)
            .filter(|t| !t.is_empty())
            .collect()
    };
    let name = card.property(&VCardProperty::N);
    let part = |i: usize| name.map(|n| component(n, i)).unwrap_or_default();
    let org = card
        .property(&VCardProperty::Org)
        .map(|o| component(o, 0))
        .unwrap_or_default();
    let address = card
        .property(&VCardProperty::Adr)
        .map(|a| {
            // PO box; extended; street; locality; region; code; country
            (0..7)
                .map(|i| component(a, i))
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    // A 4.0 number may be a URI: `tel:+1-555-0100;ext=12`.
    let phones: Vec<String> = all(VCardProperty::Tel)
        .into_iter()
        .map(|t| {
            let bare = match t.get(..4) {
                Some(scheme) if scheme.eq_ignore_ascii_case("tel:") => &t[4..],
                _ => t.as_str(),
            };
            bare.replace(";ext=", " ext. ")
        })
        .collect();
    let categories: Vec<String> = card
        .properties(&VCardProperty::Categories)
        .flat_map(|e| e.values.iter().flat_map(value_texts))
        .filter(|t| !t.is_empty())
        .collect();
    vec![
        first(VCardProperty::Uid),
        first(VCardProperty::Fn),
        part(1),
        part(2),
        part(0),
        org,
        first(VCardProperty::Title),
        all(VCardProperty::Email).join(", "),
        phones.join(", "),
        address,
        first(VCardProperty::Url),
        all(VCardProperty::Note).join("\n"),
        categories.join(", "),
        card.property(&VCardProperty::Bday)
            .map(date_of)
            .unwrap_or_default(),
    ]
}

/// A property's text: its values joined (a text value with a comma may
/// come as several).
fn text_of(e: &VCardEntry) -> String {
    e.values
        .iter()
        .flat_map(value_texts)
        .collect::<Vec<_>>()
        .join(",")
        .trim()
        .to_string()
}

fn value_texts(v: &VCardValue) -> Vec<String> {
    match v {
        VCardValue::Component(parts) => parts.clone(),
        VCardValue::Binary(data) => vec![data.to_unwrapped_string()],
        VCardValue::PartialDateTime(_) => Vec::new(),
        other => other.as_text().map(str::to_string).into_iter().collect(),
    }
}

/// The `i`th part of a structured property (N, ORG, ADR); a part with
/// several values (a second given name) is joined with spaces.
fn component(e: &VCardEntry, i: usize) -> String {
    e.values
        .get(i)
        .map(|v| value_texts(v).join(" "))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A birthday as `YYYY-MM-DD`; one without a year (`--0310`) is left
/// out, since a date field needs one.
fn date_of(e: &VCardEntry) -> String {
    match e.values.first() {
        Some(VCardValue::PartialDateTime(d)) => match (d.year, d.month, d.day) {
            (Some(y), Some(m), Some(d)) => format!("{y:04}-{m:02}-{d:02}"),
            _ => String::new(),
        },
        Some(v) => value_texts(v).join(""),
        None => String::new(),
    }
}

/// The live people among `records` as vCard 4.0, one card each: what a
/// phone or mail program imports. The UID is the record's id, so the file
/// imports back onto the same records; ORG is the company's name (give
/// every kind, so that it is known).
pub fn people_vcard(records: &[RecordView]) -> String {
    let titles: HashMap<RecordId, String> = records.iter().map(|r| (r.id, r.title())).collect();
    let company_of = |id: RecordId| titles.get(&id).cloned();
    let mut out = String::new();
    for p in records
        .iter()
        .filter(|p| !p.deleted && p.kind == Kind::Person)
    {
        let text = |f: &str| p.text(f).filter(|t| !t.is_empty());
        out.push_str("BEGIN:VCARD\r\nVERSION:4.0\r\n");
        line(&mut out, "UID", &p.id.to_string());
        let name = text("name").unwrap_or_default();
        line(&mut out, "FN", &escape(name));
        // N has no parts Rapport keeps apart: the whole name as the family
        // part would be wrong, so N carries the name in the given part
        // only when it is one word, else its last word as family name.
        let (given, family) = match name.rsplit_once(' ') {
            Some((g, f)) => (g, f),
            None => (name, ""),
        };
        line(
            &mut out,
            "N",
            &format!("{};{};;;", escape(family), escape(given)),
        );
        if let Some(c) = p
            .text("company")
            .and_then(|c| c.parse::<RecordId>().ok())
            .and_then(&company_of)
        {
            line(&mut out, "ORG", &escape(&c));
        }
        if let Some(t) = text("title") {
            line(&mut out, "TITLE", &escape(t));
        }
        for e in p.get("emails").map(FieldValue::as_list).unwrap_or_default() {
            line(&mut out, "EMAIL", &escape(e));
        }
        for t in p.get("phones").map(FieldValue::as_list).unwrap_or_default() {
            line(&mut out, "TEL;VALUE=text", &escape(t));
        }
        if let Some(a) = text("address") {
            // The whole address as the street part: Rapport keeps it as one text.
            line(&mut out, "ADR", &format!(";;{};;;;", escape(a)));
        }
        if let Some(u) = text("website") {
            line(&mut out, "URL", u);
        }
        if let Some(n) = text("notes") {
            line(&mut out, "NOTE", &escape(n));
        }
        let tags = p.get("tags").map(FieldValue::as_list).unwrap_or_default();
        if !tags.is_empty() {
            let tags: Vec<String> = tags.iter().map(|t| escape(t)).collect();
            line(&mut out, "CATEGORIES", &tags.join(","));
        }
        if let Some(b) = text("birthday") {
            line(&mut out, "BDAY", &b.replace('-', ""));
        }
        out.push_str("END:VCARD\r\n");
    }
    out
}

/// Escapes a text value (RFC 6350 §3.4, RFC 5545 §3.3.11).
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            ',' => out.push_str("\\,"),
            ';' => out.push_str("\\;"),
            c => out.push(c),
        }
    }
    out
}

/// Writes `NAME:value`, folded at 75 octets as both formats require
/// (never inside a character).
pub(crate) fn line(out: &mut String, name: &str, value: &str) {
    let whole = format!("{name}:{value}");
    let mut width = 0;
    for c in whole.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell<'a>(row: &'a Row, column: &str) -> &'a str {
        let i = CARD_COLUMNS
            .iter()
            .position(|c| *c == column)
            .expect("a card column");
        &row.cells[i]
    }

    #[test]
    fn reads_a_2_1_card_with_quoted_printable_and_a_3_0_card() {
        let text = "BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:M=C3=BCller;J=C3=BCrgen\r\n\
                    FN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:J=C3=BCrgen M=C3=BCller\r\n\
                    TEL;CELL;VOICE:+49 170 1234567\r\nEMAIL;PREF;INTERNET:jm@example.de\r\nEND:VCARD\r\n\
                    \r\nBEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ada Lovelace\r\nN:Lovelace;Ada;;;\r\n\
                    ORG:Analytical Engines Ltd;Research\r\nTITLE:Countess\r\n\
                    EMAIL;TYPE=work:ada@engines.example\r\nEMAIL;TYPE=home:ada@home.example\r\n\
                    ADR;TYPE=work:;;12 St James's Square;London;;SW1Y 4JH;UK\r\n\
                    NOTE:Met at the 1843 fair\\, very keen.\\nCall back in May.\r\n\
                    CATEGORIES:vip,math\r\nBDAY:1815-12-10\r\nURL:https://ada.example\r\nEND:VCARD\r\n";
        let rows = card_rows(text);
        assert_eq!(rows.len(), 2);
        assert_eq!(cell(&rows[0], "Full Name"), "Jürgen Müller");
        assert_eq!(cell(&rows[0], "Last Name"), "Müller");
        assert_eq!(cell(&rows[0], "Phone"), "+49 170 1234567");
        let ada = &rows[1];
        assert_eq!(ada.line, 9);
        assert_eq!(cell(ada, "Organization"), "Analytical Engines Ltd");
        assert_eq!(cell(ada, "E-mail"), "ada@engines.example, ada@home.example");
        assert_eq!(
            cell(ada, "Address"),
            "12 St James's Square, London, SW1Y 4JH, UK"
        );
        assert_eq!(
            cell(ada, "Notes"),
            "Met at the 1843 fair, very keen.\nCall back in May."
        );
        assert_eq!(cell(ada, "Categories"), "vip, math");
        assert_eq!(cell(ada, "Birthday"), "1815-12-10");
        assert_eq!(cell(ada, "Website"), "https://ada.example");
    }

    #[test]
    fn a_cut_card_is_a_problem_and_the_others_read() {
        let text =
            "BEGIN:VCARD\nVERSION:3.0\nFN:One\nEND:VCARD\nBEGIN:VCARD\nVERSION:3.0\nFN:Two\n";
        let rows = card_rows(text);
        assert_eq!(rows.len(), 2);
        assert_eq!(cell(&rows[0], "Full Name"), "One");
        assert!(rows[0].problem.is_none());
        assert!(
            rows[1]
                .problem
                .as_deref()
                .unwrap_or("")
                .contains("END:VCARD")
        );
        assert_eq!(rows[1].line, 5);
    }

    #[test]
    fn folding_never_splits_a_character_and_unfolds_back() {
        let mut out = String::new();
        let long = "é".repeat(100);
        line(&mut out, "NOTE", &long);
        assert!(out.split("\r\n").all(|l| l.len() <= 75));
        let card = format!("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:X\r\n{out}END:VCARD\r\n");
        let rows = card_rows(&card);
        assert_eq!(cell(&rows[0], "Notes"), long);
    }
}
