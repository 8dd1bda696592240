//! Records in and out of the files other software writes: CSV from
//! spreadsheets, address books and other CRMs. Sans-IO in the sense that
//! matters: it reads from any `Read` and writes to any `Write`, knows
//! nothing of the store, and never decides what a row does to it (the
//! node's `import` matches and writes).
//!
//! - [`text`]: a file's encoding and delimiter, and whether it is a table;
//! - [`table`]: its rows, streamed;
//! - [`columns`]: which column fills which field;
//! - [`locale`]: numbers and dates as the file writes them;
//! - [`write`]: records as CSV.

pub mod columns;
pub mod locale;
pub mod table;
pub mod text;
pub mod write;

pub use columns::{CellProblem, Columns, MapError, Mapped, Target};
pub use locale::{DayOrder, Locale};
pub use table::{Row, Table};
pub use text::{Encoding, FileError, Inspection, inspect};
pub use write::{CsvWriter, records_csv, write_rejected};
