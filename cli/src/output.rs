//! Printing for humans: aligned tables, record cards, local times.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rapport_model::{FieldType, FieldValue, Kind, RecordId, RecordView};
use rapport_node::ops::Titles;

/// A plain text table: a header row, then rows, columns padded to fit.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = vec![line(
        header
            .iter()
            .map(|h| h.to_uppercase())
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    )];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

/// The shortest prefix length (at least 8) that tells all `ids` apart.
pub fn short_id_len(ids: &[RecordId]) -> usize {
    let mut texts: Vec<String> = ids.iter().map(RecordId::to_string).collect();
    texts.sort();
    let common = texts
        .windows(2)
        .map(|w| {
            w[0].bytes()
                .zip(w[1].bytes())
                .take_while(|(a, b)| a == b)
                .count()
        })
        .max()
        .unwrap_or(0);
    (common + 1).clamp(8, rapport_model::id::ID_LEN)
}

/// Cuts a cell to `max` characters, marking the cut (as the node cuts
/// an activity's subject).
pub use rapport_node::ops::clip;

/// `2026-11-23 14:05` in the local time zone.
/// A status's RFC 3339 sync time as a table shows it (UTC, to the second).
pub fn sync_time(rfc3339: Option<&str>) -> String {
    rfc3339.map_or("never".into(), |t| {
        t.get(..19).unwrap_or(t).replace('T', " ")
    })
}

pub fn local_time(unix_seconds: i64) -> String {
    Timestamp::from_second(unix_seconds)
        .map(|t| {
            t.to_zoned_datetime(TimeZone::system())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| unix_seconds.to_string())
}

/// Shows field values the way a person reads them: references as the
/// referred record's title, instants in local time.
#[derive(Debug)]
pub struct Display<'a> {
    /// The titles of referenced records, as the reply gave them.
    titles: &'a Titles,
}

impl<'a> Display<'a> {
    pub fn new(titles: &'a Titles) -> Self {
        Display { titles }
    }

    fn is_titled(&self, id_text: &str) -> bool {
        id_text
            .parse::<RecordId>()
            .is_ok_and(|id| self.titles.contains_key(&id))
    }

    pub fn title_of(&mut self, id_text: &str) -> String {
        let Ok(id) = id_text.parse::<RecordId>() else {
            return id_text.to_string();
        };
        self.titles
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("(missing {id_text})"))
    }

    pub fn value(&mut self, kind: Kind, field: &str, v: &FieldValue) -> String {
        let ty = kind.field(field).map(|d| d.ty);
        match (ty, v) {
            (Some(FieldType::Ref(_)), FieldValue::Text(id)) => self.title_of(id),
            (Some(FieldType::Refs(_)), FieldValue::List(ids)) => ids
                .iter()
                .map(|id| self.title_of(id))
                .collect::<Vec<_>>()
                .join(", "),
            (Some(FieldType::DateTime), FieldValue::Text(t)) => t
                .parse::<Timestamp>()
                .map(|t| local_time(t.as_second()))
                .unwrap_or_else(|_| t.clone()),
            (Some(FieldType::Percent), FieldValue::Int(p)) => format!("{p}%"),
            // A custom reference: ids the reply gave titles for.
            (None, FieldValue::Text(id)) if self.is_titled(id) => self.title_of(id),
            (None, FieldValue::List(ids)) if ids.iter().all(|id| self.is_titled(id)) => ids
                .iter()
                .map(|id| self.title_of(id))
                .collect::<Vec<_>>()
                .join(", "),
            _ => v.to_string(),
        }
    }

    pub fn field(&mut self, view: &RecordView, field: &str) -> String {
        view.get(field)
            .map(|v| self.value(view.kind, field, v))
            .unwrap_or_default()
    }

    /// The multi-line card `show` prints.
    pub fn card(
        &mut self,
        view: &RecordView,
        space_name: Option<&str>,
        misfits: &std::collections::BTreeMap<String, String>,
    ) -> String {
        let mut lines = vec![format!(
            "{} {}{}",
            view.kind,
            view.title(),
            if view.deleted { "  [deleted]" } else { "" }
        )];
        lines.push(format!("  {:<12} {}", "id", view.id));
        if let rapport_model::SpaceId::Shared(space) = view.space {
            let name = match space_name {
                Some(s) => format!("{s} ({space})"),
                None => space.to_string(),
            };
            lines.push(format!("  {:<12} {name}", "space"));
        }
        let mut names: Vec<&str> = view.kind.fields().iter().map(|d| d.name).collect();
        names.extend(
            view.fields
                .keys()
                .map(String::as_str)
                .filter(|k| view.kind.field(k).is_none()),
        );
        for name in names {
            let Some(v) = view.get(name) else { continue };
            let mut text = self.value(view.kind, name, v);
            if let Some(all) = view.conflicts.get(name) {
                let others: Vec<String> = all[1..]
                    .iter()
                    .map(|o| self.value(view.kind, name, o))
                    .collect();
                text.push_str(&format!("   (conflict: also {})", others.join(" | ")));
            }
            if let Some(why) = misfits.get(name) {
                text.push_str(&format!("   ({why})"));
            }
            lines.push(format!("  {name:<12} {text}"));
        }
        lines.push(format!("  {:<12} {}", "updated", local_time(view.updated)));
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_clip() {
        let t = table(
            &["name", "n"],
            &[
                vec!["Acme".into(), "1".into()],
                vec!["Globex Corp".into(), "22".into()],
            ],
        );
        assert_eq!(t, "NAME         N\nAcme         1\nGlobex Corp  22");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
