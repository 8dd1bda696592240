//! The rows of a CSV file, streamed: a header, then one [`Row`] at a time
//! with the line it starts on, so that errors point at the spreadsheet.

use std::io::Read;

use crate::text::{self, Bom, Decoder, FileError, Inspection};

/// One data row: its number (1 is the first row after the header), the
/// line of the file it starts on, and its cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub number: u64,
    pub line: u64,
    pub cells: Vec<String>,
    /// Why the row cannot be read at all (a vCard or an event that is
    /// broken); a CSV row never has one.
    pub problem: Option<String>,
}

impl Row {
    /// A row of empty cells: spreadsheets leave them at the end.
    pub fn is_blank(&self) -> bool {
        self.problem.is_none() && self.cells.iter().all(|c| c.trim().is_empty())
    }
}

/// A CSV file's header and rows.
#[derive(Debug)]
pub struct Table<R: Read> {
    reader: csv::Reader<Decoder<Bom<R>>>,
    headers: Vec<String>,
    record: csv::StringRecord,
    number: u64,
}

impl<R: Read> Table<R> {
    /// Opens `file` as [`text::inspect`] described it and reads its header.
    pub fn open(file: R, found: &Inspection) -> Result<Self, FileError> {
        let text = text::decode(file, found.encoding)?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(found.delimiter)
            .flexible(true)
            .has_headers(false)
            .from_reader(text);
        let mut record = csv::StringRecord::new();
        let headers = loop {
            if !read(&mut reader, &mut record)? {
                return Err(FileError::NoHeader);
            }
            if record.iter().any(|c| !c.trim().is_empty()) {
                break record.iter().map(|c| c.trim().to_string()).collect();
            }
        };
        Ok(Table {
            reader,
            headers,
            record,
            number: 0,
        })
    }

    pub fn headers(&self) -> &[String] {
        &self.headers
    }
}

fn read<R: Read>(
    reader: &mut csv::Reader<R>,
    record: &mut csv::StringRecord,
) -> Result<bool, FileError> {
    reader.read_record(record).map_err(|e| {
        let line = e.position().map_or(0, |p| p.line());
        match e.into_kind() {
            csv::ErrorKind::Io(io) => FileError::Io(io),
            csv::ErrorKind::Utf8 { .. } => FileError::Malformed {
                line,
                reason: "this row is not text in the file's encoding".into(),
            },
            other => FileError::Malformed {
                line,
                reason: format!("the CSV cannot be read here ({other:?})"),
            },
        }
    })
}

fn memchr_count(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

impl<R: Read> Iterator for Table<R> {
    type Item = Result<Row, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        match read(&mut self.reader, &mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                self.number += 1;
                // The reader counts a line when it reads its newline: its
                // position before a record is behind by any blank lines,
                // and after it by the record's own lines (none for the
                // last line without a newline). The text has `\n` only.
                let inner: u64 = self.record.iter().map(|c| memchr_count(c.as_bytes())).sum();
                let start = self.record.position().map_or(1, |p| p.line());
                let after = self.reader.position().line();
                Some(Ok(Row {
                    number: self.number,
                    line: start.max(after.saturating_sub(1 + inner)),
                    cells: self.record.iter().map(str::to_string).collect(),
                    problem: None,
                }))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(bytes: &[u8]) -> (Vec<String>, Vec<Row>) {
        let found = text::inspect(bytes).expect("inspect");
        let table = Table::open(bytes, &found).expect("open");
        let headers = table.headers().to_vec();
        (headers, table.map(|r| r.expect("row")).collect())
    }

    #[test]
    fn quoted_fields_keep_newlines_quotes_and_delimiters() {
        let file = b"Name;Note;Email\r\n\"Ada \"\"the\"\" Countess\";\"line one\r\nline two; still\";ada@x.com\r\nBob;;b@x.com\r\n";
        let (headers, rows) = rows(file);
        assert_eq!(headers, ["Name", "Note", "Email"]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].cells[0], "Ada \"the\" Countess");
        assert_eq!(rows[0].cells[1], "line one\nline two; still");
        assert_eq!((rows[0].number, rows[0].line), (1, 2));
        assert_eq!((rows[1].number, rows[1].line), (2, 4));
    }

    #[test]
    fn blank_lines_before_the_header_are_skipped_and_short_rows_kept() {
        let (headers, rows) = rows(b"\n,,\nName,Email\nAda\n,\n");
        assert_eq!(headers, ["Name", "Email"]);
        assert_eq!(rows[0].cells, ["Ada"]);
        assert!(rows[1].is_blank());
    }

    #[test]
    fn rows_know_their_line_whatever_the_newlines() {
        for file in [
            &b"h\r\n\r\na\r\n\"b\r\nb\"\r\nc"[..],
            &b"h\n\na\n\"b\nb\"\nc\n"[..],
            &b"h\r\ra\r\"b\rb\"\rc\r"[..],
        ] {
            let (_, rows) = rows(file);
            let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
            assert_eq!(lines, [3, 4, 6], "{file:?}");
            assert_eq!(rows[1].cells[0], "b\nb");
        }
    }
}
