//! Consent and objection (GDPR articles 6, 7 and 21): which purpose a
//! campaign's channel needs, and what a person's consent records say.
//!
//! A consent is a record of its own (`Kind::Consent`: person, purpose,
//! status, date, source), so that giving, withdrawing and objecting are
//! signed, synced and kept in history like any other change. For each
//! purpose the newest record counts (by date, then by id: created later).

use crate::{RecordId, RecordView};

/// The consent purpose a campaign of `channel` needs, if any: e-mail and
/// phone campaigns need consent to be contacted that way, printed mail
/// consent to post, events and webinars consent to invitations, social
/// and ads campaigns (targeting built on a person's data) to profiling.
pub fn purpose_of_channel(channel: &str) -> Option<&'static str> {
    match channel {
        "email" => Some("email"),
        "phone" => Some("phone"),
        "print" => Some("post"),
        "event" | "webinar" => Some("events"),
        "social" | "ads" => Some("profiling"),
        _ => None,
    }
}

/// What a person's consent records say about one purpose.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Standing {
    /// The record that counts.
    pub record: RecordId,
    /// `granted`, `withdrawn` or `objected`.
    pub status: String,
    pub date: String,
    pub source: Option<String>,
}

impl Standing {
    pub fn granted(&self) -> bool {
        self.status == "granted"
    }
}

/// The newest of `records` (live consent records of one person) for
/// `purpose`.
pub fn standing<'a>(
    records: impl IntoIterator<Item = &'a RecordView>,
    purpose: &str,
) -> Option<Standing> {
    records
        .into_iter()
        .filter(|r| !r.deleted && r.text("purpose") == Some(purpose))
        .max_by(|a, b| {
            a.text("date")
                .cmp(&b.text("date"))
                .then_with(|| a.id.cmp(&b.id))
        })
        .map(|r| Standing {
            record: r.id,
            status: r.text("status").unwrap_or("granted").to_string(),
            date: r.text("date").unwrap_or_default().to_string(),
            source: r.text("source").map(str::to_string),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FieldValue, Kind};
    use std::collections::BTreeMap;

    fn consent(n: u8, purpose: &str, status: &str, date: &str) -> RecordView {
        let mut fields = BTreeMap::new();
        for (k, v) in [("purpose", purpose), ("status", status), ("date", date)] {
            fields.insert(k.to_string(), FieldValue::Text(v.to_string()));
        }
        RecordView::new(RecordId::new(n.into(), [n; 10]), Kind::Consent, fields)
    }

    #[test]
    fn the_newest_record_of_a_purpose_counts() {
        let records = [
            consent(1, "email", "granted", "2026-01-10"),
            consent(2, "email", "withdrawn", "2026-06-01"),
            consent(3, "phone", "granted", "2026-02-01"),
            // Granted again the same day, recorded later: it counts.
            consent(4, "phone", "objected", "2026-03-01"),
            consent(5, "phone", "granted", "2026-03-01"),
        ];
        let email = standing(&records, "email").expect("email");
        assert!(!email.granted());
        assert_eq!(email.status, "withdrawn");
        assert!(standing(&records, "phone").expect("phone").granted());
        assert_eq!(standing(&records, "post"), None, "no record: no consent");
        assert_eq!(purpose_of_channel("email"), Some("email"));
        assert_eq!(purpose_of_channel("print"), Some("post"));
        assert_eq!(purpose_of_channel("other"), None);
    }
}
