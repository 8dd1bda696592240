//! Rapport's own JSON export (`rapport export --format json`) read back:
//! the records of one kind as rows under Rapport's CSV columns (`id`, then
//! one per field), so they go through the same mapping, checks and
//! matching as its CSV. References, which the JSON holds as ids of the
//! exporting node, become the titles of the records they point at in the
//! same file: a new node finds (or, for a person's company, makes) them by
//! those titles, as it does from a CSV export.

use std::collections::HashMap;

use rapport_model::{Kind, RecordId};
use serde_json::Value;

use crate::table::Row;
use crate::text::FileError;

/// Kinds in the order an import takes them, so that what a record
/// refers to exists before it: companies, people, products, deals, their
/// line items, tickets, campaigns, then activities (which may be about any
/// of them).
pub const IMPORT_ORDER: [Kind; 8] = [
    Kind::Company,
    Kind::Person,
    Kind::Product,
    Kind::Deal,
    Kind::LineItem,
    Kind::Ticket,
    Kind::Campaign,
    Kind::Activity,
];

/// A JSON export, parsed.
#[derive(Debug)]
pub struct JsonRecords {
    records: Vec<serde_json::Map<String, Value>>,
    titles: HashMap<String, String>,
}

impl JsonRecords {
    /// Parses `text`: an array of records, or one record.
    pub fn parse(text: &str) -> Result<Self, FileError> {
        let value: Value = serde_json::from_str(text).map_err(|e| FileError::Malformed {
            line: e.line() as u64,
            reason: format!("this is not JSON Rapport can read ({e})"),
        })?;
        let items = match value {
            Value::Array(items) => items,
            one @ Value::Object(_) => vec![one],
            _ => {
                return Err(FileError::Malformed {
                    line: 1,
                    reason:
                        "expected an array of records, as `rapport export --format json` writes"
                            .into(),
                });
            }
        };
        let mut records = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Value::Object(o) => records.push(o),
                _ => {
                    return Err(FileError::Malformed {
                        line: 1,
                        reason: format!("item {} is not a record (an object)", i + 1),
                    });
                }
            }
        }
        let mut titles = HashMap::new();
        for r in &records {
            let (Some(id), Some(kind)) = (str_of(r, "id"), kind_of(r)) else {
                continue;
            };
            if let Some(t) = r.get(kind.title_field()).and_then(Value::as_str) {
                titles.insert(id.to_string(), t.to_string());
            }
        }
        Ok(JsonRecords { records, titles })
    }

    /// The kinds present (live records only), in [`IMPORT_ORDER`].
    pub fn kinds(&self) -> Vec<Kind> {
        IMPORT_ORDER
            .into_iter()
            .filter(|k| self.live().any(|r| kind_of(r) == Some(*k)))
            .collect()
    }

    /// The headers and rows of the live records of `kind`.
    pub fn rows(&self, kind: Kind) -> (Vec<String>, Vec<Row>) {
        let headers: Vec<String> = std::iter::once("id")
            .chain(kind.fields().iter().map(|d| d.name))
            .map(str::to_string)
            .collect();
        let rows = self
            .live()
            .filter(|r| kind_of(r) == Some(kind))
            .enumerate()
            .map(|(i, r)| {
                let mut cells = vec![str_of(r, "id").unwrap_or_default().to_string()];
                for def in kind.fields() {
                    let refs = def.ty.ref_kinds().is_some();
                    cells.push(
                        r.get(def.name)
                            .map_or_else(String::new, |v| self.cell(v, refs)),
                    );
                }
                Row {
                    number: i as u64 + 1,
                    line: 1,
                    cells,
                    problem: None,
                }
            })
            .collect();
        (headers, rows)
    }

    fn live(&self) -> impl Iterator<Item = &serde_json::Map<String, Value>> {
        self.records
            .iter()
            .filter(|r| r.get("deleted").and_then(Value::as_bool) != Some(true))
    }

    fn cell(&self, v: &Value, refs: bool) -> String {
        let named = |s: &str| -> String {
            if refs && s.parse::<RecordId>().is_ok() {
                self.titles.get(s).cloned().unwrap_or_else(|| s.to_string())
            } else {
                s.to_string()
            }
        };
        match v {
            Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => named(s),
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => named(s),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", "),
            Value::Null => String::new(),
            Value::Object(_) => v.to_string(),
        }
    }
}

fn str_of<'a>(r: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    r.get(key).and_then(Value::as_str)
}

fn kind_of(r: &serde_json::Map<String, Value>) -> Option<Kind> {
    str_of(r, "kind").and_then(|k| k.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_become_titles_of_the_same_file() {
        let text = r#"[
          {"id":"01jq0000000000000000000001","kind":"company","space":"private","name":"Acme","domain":"acme.example","updated":"2026-01-01T00:00:00Z"},
          {"id":"01jq0000000000000000000002","kind":"person","space":"private","name":"Ada","emails":["ada@acme.example"],"company":"01jq0000000000000000000001","updated":"2026-01-01T00:00:00Z"},
          {"id":"01jq0000000000000000000003","kind":"person","space":"private","name":"Gone","deleted":true,"updated":"2026-01-01T00:00:00Z"}
        ]"#;
        let file = JsonRecords::parse(text).expect("parses");
        assert_eq!(file.kinds(), vec![Kind::Company, Kind::Person]);
        let (headers, rows) = file.rows(Kind::Person);
        assert_eq!(rows.len(), 1, "the deleted record is not imported");
        let at = |h: &str| headers.iter().position(|x| x == h).expect("column");
        assert_eq!(rows[0].cells[at("company")], "Acme");
        assert_eq!(rows[0].cells[at("emails")], "ada@acme.example");
    }

    #[test]
    fn not_an_export_is_refused() {
        assert!(JsonRecords::parse("42").is_err());
        assert!(JsonRecords::parse("[1, 2]").is_err());
        assert!(JsonRecords::parse("{\"id\": ").is_err());
    }
}
