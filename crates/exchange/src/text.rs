//! What a text file really is before it is parsed: its encoding, its
//! delimiter, and whether it is a text table at all. Files come from
//! Excel, Outlook, Google and other CRMs, so the encoding is read off the
//! bytes (a byte-order mark, else UTF-8 if every byte sequence is UTF-8,
//! else Windows-1252, what Excel writes on Western Windows) and the
//! delimiter off the header line.
//!
//! [`inspect`] reads the whole file once, in constant memory, before
//! anything is written: a binary file, a truncated one (a quote never
//! closed) or one with a line too long to be a table is refused whole.
//! [`decode`] then yields the same file as UTF-8 for the CSV parser.

use std::io::{self, Read};

/// The longest row taken (with the newlines inside its quoted cells): a
/// contact's row is rarely over a few KiB; a 50 MB line is not a table.
/// It also keeps every record an import writes far under the size limit
/// of one signed change.
pub const MAX_ROW: usize = 256 << 10;

/// How the bytes of a file encode its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    Utf8,
    /// UTF-8 after a byte-order mark (Excel's "CSV UTF-8").
    Utf8Bom,
    /// UTF-16 little-endian after its byte-order mark (Excel's "Unicode text").
    Utf16Le,
    Utf16Be,
    /// Not UTF-8 and no mark: Excel's "CSV" on Western Windows, Outlook.
    Windows1252,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf8Bom => "UTF-8 with BOM",
            Encoding::Utf16Le => "UTF-16LE",
            Encoding::Utf16Be => "UTF-16BE",
            Encoding::Windows1252 => "Windows-1252",
        }
    }
}

/// A file that cannot be read as a table: nothing of it is imported.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is binary (a {what} at byte {at}), not a text table; export it as CSV first")]
    Binary { what: &'static str, at: u64 },
    #[error(
        "the row on line {line} is over {} KiB long: this is not a table a spreadsheet writes",
        MAX_ROW >> 10
    )]
    RowTooLong { line: u64 },
    #[error(
        "the file ends inside a quoted field opened on line {line}: it looks truncated; export it again"
    )]
    Truncated { line: u64 },
    #[error("the file has no header line naming its columns")]
    NoHeader,
    #[error("the file is over {} MiB; split it, or export it as CSV, which is read as it streams", .0 >> 20)]
    TooLarge(u64),
    #[error("line {line}: {reason}")]
    Malformed { line: u64, reason: String },
    #[error("could not read the file: {0}")]
    Io(#[from] io::Error),
}

/// What [`inspect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspection {
    pub encoding: Encoding,
    /// `,`, `;` or tab: the one the header line uses most.
    pub delimiter: u8,
    /// Lines of the file (rows with quoted newlines count more than once).
    pub lines: u64,
    /// Size in bytes, as read.
    pub bytes: u64,
}

/// Reads `file` to its end and says how to parse it, or why it is not a
/// text table.
pub fn inspect(file: impl Read) -> Result<Inspection, FileError> {
    let mut file = Bom::read(file)?;
    let mark = file.mark;
    let mut scan = Scan::default();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    match mark {
        Some(e @ (Encoding::Utf16Le | Encoding::Utf16Be)) => {
            let mut text = Decoder::new(file, e);
            loop {
                let n = read_some(&mut text, &mut buf)?;
                if n == 0 {
                    break;
                }
                bytes += n as u64;
                scan.feed(&buf[..n])?;
            }
        }
        _ => loop {
            let n = read_some(&mut file, &mut buf)?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            scan.feed(&buf[..n])?;
        },
    }
    if bytes == 0 {
        return Err(FileError::Empty);
    }
    let utf8 = scan.finish()?;
    let encoding = match mark {
        Some(Encoding::Utf8Bom) if !utf8 => {
            return Err(FileError::Malformed {
                line: 1,
                reason: "the file says it is UTF-8 (it starts with a byte-order mark) but is not; \
                         save it again as CSV UTF-8"
                    .into(),
            });
        }
        Some(e) => e,
        None if utf8 => Encoding::Utf8,
        None => Encoding::Windows1252,
    };
    Ok(Inspection {
        encoding,
        delimiter: scan.delimiter(),
        lines: scan.lines,
        bytes,
    })
}

/// A whole text document (vCard, iCalendar, JSON) of at most `limit`
/// bytes: its encoding (as [`inspect`] decides it), its text, and its
/// bytes as read. A file with NUL bytes is binary and refused.
pub fn read_text(file: impl Read, limit: u64) -> Result<(Encoding, String, Vec<u8>), FileError> {
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge(limit));
    }
    if bytes.is_empty() {
        return Err(FileError::Empty);
    }
    let mark = Bom::read(&bytes[..])?.mark;
    let encoding = match mark {
        Some(e) => e,
        None if std::str::from_utf8(&bytes).is_ok() => Encoding::Utf8,
        None => Encoding::Windows1252,
    };
    if !matches!(encoding, Encoding::Utf16Le | Encoding::Utf16Be)
        && let Some(at) = bytes.iter().position(|b| *b == 0)
    {
        return Err(FileError::Binary {
            what: "NUL byte",
            at: at as u64,
        });
    }
    let mut text = String::new();
    decode(&bytes[..], encoding)?
        .read_to_string(&mut text)
        .map_err(|e| FileError::Malformed {
            line: 1,
            reason: format!("the file is not text in {} ({e})", encoding.as_str()),
        })?;
    Ok((encoding, text, bytes))
}

/// `file` as UTF-8 text, decoded as `encoding` (its byte-order mark dropped).
pub fn decode<R: Read>(file: R, encoding: Encoding) -> Result<Decoder<Bom<R>>, FileError> {
    let file = Bom::read(file)?;
    Ok(Decoder::new(file, encoding))
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A reader with its byte-order mark, if any, read off.
#[derive(Debug)]
pub struct Bom<R> {
    inner: R,
    /// Bytes read while looking for a mark that were not one.
    head: Vec<u8>,
    mark: Option<Encoding>,
}

impl<R: Read> Bom<R> {
    fn read(mut inner: R) -> io::Result<Self> {
        let mut head = Vec::with_capacity(3);
        let mut byte = [0u8; 1];
        while head.len() < 3 {
            if read_some(&mut inner, &mut byte)? == 0 {
                break;
            }
            head.push(byte[0]);
            let mark = match head.as_slice() {
                [0xEF, 0xBB, 0xBF] => Some(Encoding::Utf8Bom),
                [0xFF, 0xFE] => Some(Encoding::Utf16Le),
                [0xFE, 0xFF] => Some(Encoding::Utf16Be),
                _ => None,
            };
            if mark.is_some() {
                return Ok(Bom {
                    inner,
                    head: Vec::new(),
                    mark,
                });
            }
            let could_be = matches!(head.as_slice(), [0xEF] | [0xEF, 0xBB] | [0xFF] | [0xFE]);
            if !could_be {
                break;
            }
        }
        Ok(Bom {
            inner,
            head,
            mark: None,
        })
    }
}

impl<R: Read> Read for Bom<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.len());
            buf[..n].copy_from_slice(&self.head[..n]);
            self.head.drain(..n);
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// Text in `encoding` as UTF-8, a chunk at a time.
#[derive(Debug)]
pub struct Decoder<R> {
    inner: R,
    encoding: Encoding,
    out: Vec<u8>,
    at: usize,
    /// An odd byte, or a high surrogate, waiting for the rest of its character.
    pending: Vec<u8>,
    raw: Vec<u8>,
    done: bool,
    /// The last byte given out was a `\r`: a `\n` next is its pair.
    after_cr: bool,
}

impl<R: Read> Decoder<R> {
    fn new(inner: R, encoding: Encoding) -> Self {
        Decoder {
            inner,
            encoding,
            out: Vec::new(),
            at: 0,
            pending: Vec::new(),
            raw: vec![0u8; 64 * 1024],
            done: false,
            after_cr: false,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.at = 0;
        while self.out.is_empty() && !self.done {
            let n = read_some(&mut self.inner, &mut self.raw)?;
            if n == 0 {
                self.done = true;
                if !self.pending.is_empty() {
                    // A lone byte or surrogate at the very end.
                    self.pending.clear();
                    self.out.extend_from_slice("\u{FFFD}".as_bytes());
                }
                break;
            }
            match self.encoding {
                Encoding::Utf8 | Encoding::Utf8Bom => self.out.extend_from_slice(&self.raw[..n]),
                Encoding::Windows1252 => {
                    let mut s = String::with_capacity(n + n / 8);
                    s.extend(self.raw[..n].iter().map(|&b| windows_1252(b)));
                    self.out = s.into_bytes();
                }
                Encoding::Utf16Le | Encoding::Utf16Be => {
                    self.pending.extend_from_slice(&self.raw[..n]);
                    let le = self.encoding == Encoding::Utf16Le;
                    let whole = self.pending.len() / 2 * 2;
                    let mut units: Vec<u16> = self.pending[..whole]
                        .chunks_exact(2)
                        .map(|p| {
                            if le {
                                u16::from_le_bytes([p[0], p[1]])
                            } else {
                                u16::from_be_bytes([p[0], p[1]])
                            }
                        })
                        .collect();
                    let mut keep: Vec<u8> = self.pending[whole..].to_vec();
                    // A high surrogate at the end waits for its low half.
                    if let Some(&last) = units.last()
                        && (0xD800..0xDC00).contains(&last)
                    {
                        units.pop();
                        let mut unit = self.pending[whole - 2..whole].to_vec();
                        unit.extend_from_slice(&keep);
                        keep = unit;
                    }
                    let s: String = char::decode_utf16(units)
                        .map(|c| c.unwrap_or('\u{FFFD}'))
                        .collect();
                    self.out = s.into_bytes();
                    self.pending = keep;
                }
            }
            self.after_cr = unify_newlines(&mut self.out, self.after_cr);
        }
        Ok(())
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at >= self.out.len() {
            self.fill()?;
        }
        let n = (self.out.len() - self.at).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Turns `\r\n` and a lone `\r` (old Macs) into `\n` in place, so that
/// rows and the newlines in cells read the same from any system.
/// `after_cr` carries a `\r` at the end of the previous chunk; returns it
/// for this chunk's end.
fn unify_newlines(text: &mut Vec<u8>, mut after_cr: bool) -> bool {
    let mut w = 0;
    for r in 0..text.len() {
        let b = text[r];
        if b == b'\n' && after_cr {
            after_cr = false;
            continue;
        }
        after_cr = b == b'\r';
        text[w] = if after_cr { b'\n' } else { b };
        w += 1;
    }
    text.truncate(w);
    after_cr
}

/// One byte of Windows-1252 as a character: Latin-1 but for 0x80..0x9F.
fn windows_1252(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
        0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => char::from_u32(u32::from(HIGH[usize::from(b - 0x80)])).unwrap_or('\u{FFFD}'),
        _ => char::from(b),
    }
}

/// The one pass of [`inspect`] over the text's bytes. Quotes, newlines,
/// delimiters and control bytes are ASCII, the same in UTF-8 and
/// Windows-1252, so this pass needs no decoding.
#[derive(Debug)]
struct Scan {
    at: u64,
    lines: u64,
    /// Bytes of the row being read, and the line it started on.
    row_len: usize,
    row_line: u64,
    quoted: bool,
    /// In a quoted cell, the last byte was a quote: the cell's end, or
    /// the first of a doubled one.
    quote_seen: bool,
    /// At the start of a cell: only there does a quote open one.
    cell_start: bool,
    quote_opened_on: u64,
    header_text: bool,
    header_done: bool,
    counts: [u32; 3],
    utf8_carry: Vec<u8>,
    not_utf8: bool,
    controls: u64,
}

impl Default for Scan {
    fn default() -> Self {
        Scan {
            at: 0,
            lines: 0,
            row_len: 0,
            row_line: 0,
            quoted: false,
            quote_seen: false,
            cell_start: true,
            quote_opened_on: 0,
            header_text: false,
            header_done: false,
            counts: [0; 3],
            utf8_carry: Vec::new(),
            not_utf8: false,
            controls: 0,
        }
    }
}

impl Scan {
    /// Whether `b` separates cells: any of `,` `;` tab in the header, the
    /// header's delimiter after it.
    fn is_delimiter(&self, b: u8) -> bool {
        if self.header_done {
            b == self.delimiter()
        } else {
            matches!(b, b',' | b';' | b'\t')
        }
    }

    /// Follows quoting as CSV readers do: a quote opens a cell only at
    /// its start (`24" Monitor` is text), `""` inside is one quote.
    fn quote_state(&mut self, b: u8) {
        if self.quoted {
            if self.quote_seen {
                self.quote_seen = false;
                if b == b'"' {
                    return;
                }
                self.quoted = false;
            } else {
                if b == b'"' {
                    self.quote_seen = true;
                }
                return;
            }
        }
        if b == b'\n' || self.is_delimiter(b) {
            self.cell_start = true;
        } else if b == b'"' && self.cell_start {
            self.quoted = true;
            self.quote_opened_on = self.lines + 1;
            self.cell_start = false;
        } else if b != b'\r' {
            // A space before a quote makes it text, as the CSV reader reads it.
            self.cell_start = false;
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<(), FileError> {
        if !self.not_utf8 {
            self.check_utf8(chunk);
        }
        for &b in chunk {
            self.at += 1;
            self.quote_state(b);
            match b {
                b'\n' => {
                    self.lines += 1;
                    if !self.quoted {
                        self.row_len = 0;
                        self.row_line = self.lines;
                    }
                    // The header is the first line that names something.
                    if !self.quoted && self.header_text {
                        self.header_done = true;
                    }
                    continue;
                }
                0 => {
                    return Err(FileError::Binary {
                        what: "NUL byte",
                        at: self.at - 1,
                    });
                }
                b'\r' | b'\t' | 0x0C | b'"' => {}
                1..=0x1F | 0x7F => {
                    self.controls += 1;
                    if self.controls > 8 && self.controls * 100 > self.at {
                        return Err(FileError::Binary {
                            what: "control byte",
                            at: self.at - 1,
                        });
                    }
                }
                _ => {}
            }
            if !self.header_done {
                if !self.quoted {
                    match b {
                        b',' => self.counts[0] += 1,
                        b';' => self.counts[1] += 1,
                        b'\t' => self.counts[2] += 1,
                        _ => {}
                    }
                }
                if !matches!(b, b',' | b';' | b'\t' | b' ' | b'\r' | b'"') {
                    self.header_text = true;
                }
            }
            self.row_len += 1;
            if self.row_len > MAX_ROW {
                return Err(FileError::RowTooLong {
                    line: self.row_line + 1,
                });
            }
        }
        Ok(())
    }

    fn check_utf8(&mut self, chunk: &[u8]) {
        let mut data = std::mem::take(&mut self.utf8_carry);
        data.extend_from_slice(chunk);
        if let Err(e) = std::str::from_utf8(&data) {
            if e.error_len().is_some() {
                self.not_utf8 = true;
            } else {
                self.utf8_carry = data[e.valid_up_to()..].to_vec();
            }
        }
    }

    /// Whether the text was UTF-8 throughout.
    fn finish(&mut self) -> Result<bool, FileError> {
        if self.quoted && !self.quote_seen {
            return Err(FileError::Truncated {
                line: self.quote_opened_on,
            });
        }
        if !self.header_text {
            return Err(FileError::NoHeader);
        }
        if self.row_len > 0 {
            self.lines += 1;
        }
        Ok(!self.not_utf8 && self.utf8_carry.is_empty())
    }

    fn delimiter(&self) -> u8 {
        let [comma, semi, tab] = self.counts;
        if tab > comma && tab > semi {
            b'\t'
        } else if semi > comma {
            b';'
        } else {
            b','
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(bytes: &[u8]) -> (Inspection, String) {
        let found = inspect(bytes).expect("inspect");
        let mut s = String::new();
        decode(bytes, found.encoding)
            .expect("decode")
            .read_to_string(&mut s)
            .expect("utf-8");
        (found, s)
    }

    #[test]
    fn encodings_are_read_off_the_bytes() {
        let (i, s) = text_of("Name,Email\nJosé,j@x.com\n".as_bytes());
        assert_eq!((i.encoding, i.delimiter), (Encoding::Utf8, b','));
        assert_eq!(s, "Name,Email\nJosé,j@x.com\n");

        let (i, s) = text_of(b"\xEF\xBB\xBFName;Email\r\nJos\xC3\xA9;j@x.com\r\n");
        assert_eq!((i.encoding, i.delimiter), (Encoding::Utf8Bom, b';'));
        assert_eq!(s, "Name;Email\nJosé;j@x.com\n");

        // Windows-1252: é is one byte, and 0x80 is the euro sign.
        let (i, s) = text_of(b"Name;Amount\nJos\xE9;\x80 5\n");
        assert_eq!(i.encoding, Encoding::Windows1252);
        assert_eq!(s, "Name;Amount\nJosé;€ 5\n");

        let mut le = vec![0xFF, 0xFE];
        for u in "Name\tEmail\nJosé 😀\tj@x.com\n".encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
        }
        let (i, s) = text_of(&le);
        assert_eq!((i.encoding, i.delimiter), (Encoding::Utf16Le, b'\t'));
        assert_eq!(s, "Name\tEmail\nJosé 😀\tj@x.com\n");
    }

    #[test]
    fn utf16_survives_any_chunking() {
        let text = "a,b\n😀é,ü\n".repeat(20_000);
        let mut be = vec![0xFE, 0xFF];
        for u in text.encode_utf16() {
            be.extend_from_slice(&u.to_be_bytes());
        }
        let (i, s) = text_of(&be);
        assert_eq!(i.encoding, Encoding::Utf16Be);
        assert_eq!(s, text);
    }

    #[test]
    fn a_file_that_is_no_table_is_refused_whole() {
        assert!(matches!(inspect(&b""[..]), Err(FileError::Empty)));
        assert!(matches!(
            inspect(&b"PK\x03\x04\x00\x00zip"[..]),
            Err(FileError::Binary { .. })
        ));
        assert!(matches!(
            inspect(&b"Name,Note\nAda,\"cut off here\n"[..]),
            Err(FileError::Truncated { line: 2 })
        ));
        let long = vec![b'x'; MAX_ROW + 10];
        assert!(matches!(
            inspect(&long[..]),
            Err(FileError::RowTooLong { line: 1 })
        ));
        // Many short lines inside one quoted cell are one long row.
        let mut cell = b"Name,Note\nAda,\"".to_vec();
        cell.extend(b"a line of notes\n".repeat(MAX_ROW / 10));
        cell.extend(b"\"\n");
        assert!(matches!(
            inspect(&cell[..]),
            Err(FileError::RowTooLong { line: 2 })
        ));
        assert!(matches!(inspect(&b"\n\n"[..]), Err(FileError::NoHeader)));
    }

    #[test]
    fn a_quote_inside_a_cell_is_text_and_a_doubled_one_is_one() {
        let i = inspect(&b"Name,Item\nAda,24\" Monitor\nBob,\"say \"\"hi\"\"\"\n"[..])
            .expect("inspect");
        assert_eq!(i.lines, 3);
        let bom = inspect(&b"\xEF\xBB\xBFName\nJos\xE9\n"[..]);
        assert!(matches!(bom, Err(FileError::Malformed { .. })), "{bom:?}");
    }

    #[test]
    fn delimiters_inside_quotes_do_not_count() {
        let i = inspect(&b"\"Last, First\";Email\nx;y\n"[..]).expect("inspect");
        assert_eq!(i.delimiter, b';');
    }
}
