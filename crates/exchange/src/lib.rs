//! Records in and out of the files other software writes: CSV from
//! spreadsheets, address books and other CRMs; vCard from phones and
//! mail programs; iCalendar from calendars; Rapport's own JSON. Sans-IO in the sense that
//! matters: it reads from any `Read` and writes to any `Write`, knows
//! nothing of the store, and never decides what a row does to it (the
//! node's `import` matches and writes).
//!
//! - [`text`]: a file's encoding and delimiter, and whether it is a table;
//! - [`table`]: its rows, streamed;
//! - [`columns`]: which column fills which field;
//! - [`locale`]: numbers and dates as the file writes them;
//! - [`write`]: records as CSV;
//! - [`cards`]: vCard in (as rows) and out;
//! - [`calendar`]: iCalendar in (as rows) and out;
//! - [`json`]: Rapport's JSON export in (as rows).

pub mod calendar;
pub mod cards;
pub mod columns;
pub mod json;
pub mod locale;
pub mod table;
pub mod text;
pub mod write;

pub use calendar::{CALENDAR_COLUMNS, activities_ics, calendar_rows};
pub use cards::{CARD_COLUMNS, card_rows, people_vcard};
pub use columns::{CellProblem, Columns, MapError, Mapped, Target};
pub use json::{IMPORT_ORDER, JsonRecords};
pub use locale::{DayOrder, Locale};
pub use table::{Row, Table};
pub use text::{Encoding, FileError, Inspection, inspect};
pub use write::{CsvWriter, records_csv, write_rejected, write_table};
