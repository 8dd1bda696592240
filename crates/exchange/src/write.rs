//! Records of one kind as CSV: UTF-8 with a byte-order mark (so Excel
//! opens accents right), an `id` column, then one column per field named
//! as the field, so that the file imports back without `--map`.
//! References are written as the referenced record's title, lists joined
//! with ", ", flags as yes/no: what the CLI's flags read. Custom fields
//! (those the kind does not build in) follow in name order, one column
//! each, for every such field a record of the file holds: an export
//! carries every value, whatever schema is current.

use std::collections::HashMap;
use std::io::{self, Write};

use rapport_model::{Kind, RecordId, RecordView};

/// Writes rows of one kind.
#[derive(Debug)]
pub struct CsvWriter<W: Write> {
    inner: csv::Writer<W>,
    kind: Kind,
    /// Custom fields, after the built-in ones.
    custom: Vec<String>,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(mut out: W, kind: Kind, custom: Vec<String>) -> io::Result<Self> {
        out.write_all("\u{FEFF}".as_bytes())?;
        let mut inner = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(out);
        let header = std::iter::once("id")
            .chain(kind.fields().iter().map(|d| d.name))
            .chain(custom.iter().map(String::as_str))
            .map(|h| inert(h.to_string()));
        inner.write_record(header).map_err(into_io)?;
        Ok(CsvWriter {
            inner,
            kind,
            custom,
        })
    }

    /// One record; `title_of` names a referenced record (its id if unknown).
    pub fn record(
        &mut self,
        view: &RecordView,
        title_of: impl Fn(RecordId) -> Option<String>,
    ) -> io::Result<()> {
        let name = |s: &str| {
            s.parse::<RecordId>()
                .ok()
                .and_then(&title_of)
                .unwrap_or_else(|| s.to_string())
        };
        let mut row = vec![view.id.to_string()];
        for def in self.kind.fields() {
            let cell = match (view.get(def.name), def.ty.ref_kinds()) {
                (None, _) => String::new(),
                (Some(v), Some(_)) if def.ty.is_list() => v
                    .as_list()
                    .iter()
                    .map(|s| name(s))
                    .collect::<Vec<_>>()
                    .join(", "),
                (Some(v), Some(_)) => v.as_text().map(name).unwrap_or_default(),
                (Some(v), None) => v.to_string(),
            };
            row.push(inert(cell));
        }
        let references: Vec<&str> = view.references().iter().map(|(f, _)| *f).collect();
        for field in &self.custom {
            let cell = match view.get(field) {
                None => String::new(),
                Some(v) if references.contains(&field.as_str()) => match v {
                    rapport_model::FieldValue::List(l) => {
                        l.iter().map(|s| name(s)).collect::<Vec<_>>().join(", ")
                    }
                    other => other.as_text().map(name).unwrap_or_default(),
                },
                Some(rapport_model::FieldValue::List(l)) => l.join(", "),
                Some(v) => v.to_string(),
            };
            row.push(inert(cell));
        }
        self.inner.write_record(&row).map_err(into_io)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.inner.flush()?;
        self.inner.into_inner().map_err(|e| e.into_error())
    }
}

/// Characters that make a spreadsheet read a cell as a formula.
pub(crate) const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell a spreadsheet shows as text, never runs: one that starts like a
/// formula (text from another member, `=HYPERLINK(...)`) gets a leading
/// `'`, which spreadsheets hide and `columns` drops on import.
fn inert(cell: String) -> String {
    if needs_mark(&cell) {
        format!("'{cell}")
    } else {
        cell
    }
}

/// Whether a cell starts like a formula, or like one made inert already
/// (`'=x` is written `''=x`, so that reading it back drops exactly one `'`).
fn needs_mark(cell: &str) -> bool {
    cell.starts_with(FORMULA_START)
        || cell
            .strip_prefix('\'')
            .is_some_and(|rest| rest.starts_with(FORMULA_START) || rest.starts_with('\''))
}

/// A cell as it was before [`inert`].
pub(crate) fn unmark(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if needs_mark(rest) => rest,
        _ => cell,
    }
}

fn into_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// The live records of `kind` among `records` as CSV; references are
/// named by the titles of `records` (give every kind, so that a person's
/// company has its name).
pub fn records_csv<W: Write>(out: W, kind: Kind, records: &[RecordView]) -> io::Result<W> {
    let titles: HashMap<RecordId, String> = records.iter().map(|r| (r.id, r.title())).collect();
    let custom: std::collections::BTreeSet<&String> = records
        .iter()
        .filter(|r| r.kind == kind && !r.deleted)
        .flat_map(|r| r.fields.keys())
        .filter(|f| kind.field(f).is_none())
        .collect();
    let mut w = CsvWriter::new(out, kind, custom.into_iter().cloned().collect())?;
    for r in records.iter().filter(|r| r.kind == kind && !r.deleted) {
        w.record(r, |id| titles.get(&id).cloned())?;
    }
    w.finish()
}

/// Rows a file gave that could not be imported, as they were, with the
/// reason in a last column: the user fixes them there and imports that
/// file. UTF-8 with a byte-order mark, like every CSV Rapport writes.
pub fn write_rejected<W: Write>(
    out: W,
    headers: &[String],
    rows: &[(Vec<String>, String)],
) -> io::Result<W> {
    let mut header = headers.to_vec();
    header.push("Rapport error".into());
    let rows = rows.iter().map(|(cells, reason)| {
        let mut row = cells.clone();
        row.resize(headers.len(), String::new());
        row.push(reason.clone());
        row
    });
    write_table(out, &header, rows)
}

/// Any table (a report's section) as CSV: UTF-8 with a byte-order mark,
/// cells made inert like every CSV Rapport writes.
pub fn write_table<W: Write>(
    mut out: W,
    header: &[String],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> io::Result<W> {
    out.write_all("\u{FEFF}".as_bytes())?;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    w.write_record(header.iter().cloned().map(inert))
        .map_err(into_io)?;
    for row in rows {
        w.write_record(row.into_iter().map(inert))
            .map_err(into_io)?;
    }
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Columns, Locale};
    use rapport_model::{FieldValue, SpaceId};

    #[test]
    fn a_cell_that_looks_like_a_formula_is_written_inert_and_reads_back_as_it_was() {
        let id: RecordId = "01m8pe3r3dhnecwh9hwr6rgggb".parse().expect("id");
        let mut fields = std::collections::BTreeMap::new();
        fields.insert(
            "name".to_string(),
            FieldValue::Text("=HYPERLINK(\"http://evil\")".into()),
        );
        fields.insert(
            "phones".to_string(),
            FieldValue::List(vec!["+49 30 1234567".into()]),
        );
        // A field name a peer's record carries is a header cell too.
        fields.insert(
            "=cmd|' /c calc'!A0".to_string(),
            FieldValue::Text("x".into()),
        );
        let view = RecordView {
            id,
            kind: Kind::Person,
            space: SpaceId::Private,
            deleted: false,
            merged_into: None,
            updated: 0,
            fields,
            conflicts: Default::default(),
        };
        let bytes = records_csv(Vec::new(), Kind::Person, &[view]).expect("csv");
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(
            text.contains("\"'=HYPERLINK(\"\"http://evil\"\")\""),
            "{text}"
        );
        assert!(text.contains(",'+49 30 1234567,"), "{text}");
        assert!(text.contains(",'=cmd|' /c calc'!A0\r\n"), "{text}");
        let headers: Vec<String> = ["id", "name", "phones"].map(String::from).to_vec();
        let columns = Columns::guess(Kind::Person, &headers, &[]).expect("columns");
        let cells: Vec<String> = [
            id.to_string(),
            "'=HYPERLINK(\"http://evil\")".into(),
            "'+49 30 1234567".into(),
        ]
        .to_vec();
        let row = columns.row(&cells, &Locale::for_delimiter(b','));
        assert_eq!(row.inputs[0].1, "=HYPERLINK(\"http://evil\")");
        assert_eq!(row.inputs[1].1, "+49 30 1234567");
        for text in ["'=x", "''", "'s-Hertogenbosch", "=1+1", "plain"] {
            assert_eq!(unmark(&inert(text.to_string())), text);
        }
    }
}
