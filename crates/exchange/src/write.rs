//! Records of one kind as CSV: UTF-8 with a byte-order mark (so Excel
//! opens accents right), an `id` column, then one column per field named
//! as the field, so that the file imports back without `--map`.
//! References are written as the referenced record's title, lists joined
//! with ", ", flags as yes/no: what the CLI's flags read.

use std::io::{self, Write};

use rapport_model::{Kind, RecordId, RecordView};

/// Writes rows of one kind.
#[derive(Debug)]
pub struct CsvWriter<W: Write> {
    inner: csv::Writer<W>,
    kind: Kind,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(mut out: W, kind: Kind) -> io::Result<Self> {
        out.write_all("\u{FEFF}".as_bytes())?;
        let mut inner = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(out);
        let header = std::iter::once("id").chain(kind.fields().iter().map(|d| d.name));
        inner.write_record(header).map_err(into_io)?;
        Ok(CsvWriter { inner, kind })
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
            row.push(cell);
        }
        self.inner.write_record(&row).map_err(into_io)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.inner.flush()?;
        self.inner.into_inner().map_err(|e| e.into_error())
    }
}

fn into_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => io::Error::other(format!("{other:?}")),
    }
}
