//! Demo data for `rapport up --demo`: a small, believable book of business
//! so that a newcomer has something to list, edit and search.

use rapport_model::{Kind, SpaceId};

use crate::repo::Input;
use crate::{NodeError, Repo};

type Rows = &'static [&'static [(&'static str, &'static str)]];

const COMPANIES: Rows = &[
    &[
        ("name", "Acme Corporation"),
        ("domain", "acme.example"),
        ("industry", "Manufacturing"),
        ("phone", "+1 555 0100"),
        ("owner", "Dana"),
        ("tags", "key account"),
    ],
    &[
        ("name", "Northwind Traders"),
        ("domain", "northwind.example"),
        ("industry", "Wholesale"),
        ("owner", "Dana"),
        ("tags", "partner"),
    ],
    &[
        ("name", "Globex"),
        ("domain", "globex.example"),
        ("industry", "Energy"),
        ("owner", "Sam"),
    ],
    &[
        ("name", "Initech"),
        ("domain", "initech.example"),
        ("industry", "Software"),
        ("owner", "Sam"),
    ],
    &[
        ("name", "Umbrella Health"),
        ("domain", "umbrella.example"),
        ("industry", "Healthcare"),
        ("owner", "Dana"),
    ],
];

const PEOPLE: Rows = &[
    &[
        ("name", "Ann Baker"),
        ("emails", "ann@acme.example"),
        ("title", "Head of Purchasing"),
        ("company", "Acme Corporation"),
        ("phones", "+1 555 0101"),
    ],
    &[
        ("name", "Carlos Diaz"),
        ("emails", "carlos@acme.example"),
        ("title", "CTO"),
        ("company", "Acme Corporation"),
    ],
    &[
        ("name", "Nora Lind"),
        ("emails", "nora@northwind.example"),
        ("title", "Partner Manager"),
        ("company", "Northwind Traders"),
    ],
    &[
        ("name", "Hank Scorpio"),
        ("emails", "hank@globex.example"),
        ("title", "CEO"),
        ("company", "Globex"),
    ],
    &[
        ("name", "Peter Gibbons"),
        ("emails", "peter@initech.example"),
        ("title", "Engineer"),
        ("company", "Initech"),
    ],
    &[
        ("name", "Alice Wong"),
        ("emails", "alice@umbrella.example"),
        ("title", "IT Director"),
        ("company", "Umbrella Health"),
    ],
];

const DEALS: Rows = &[
    &[
        ("title", "Acme plant rollout"),
        ("company", "Acme Corporation"),
        ("contacts", "Ann Baker, Carlos Diaz"),
        ("amount", "48000"),
        ("currency", "EUR"),
        ("stage", "negotiation"),
        ("close", "+3w"),
    ],
    &[
        ("title", "Acme support renewal"),
        ("company", "Acme Corporation"),
        ("contacts", "Ann Baker"),
        ("amount", "12000"),
        ("currency", "EUR"),
        ("stage", "won"),
    ],
    &[
        ("title", "Northwind reseller bundle"),
        ("company", "Northwind Traders"),
        ("contacts", "Nora Lind"),
        ("amount", "20000"),
        ("currency", "EUR"),
        ("stage", "proposal"),
        ("close", "+6w"),
    ],
    &[
        ("title", "Globex grid pilot"),
        ("company", "Globex"),
        ("contacts", "Hank Scorpio"),
        ("amount", "75000"),
        ("currency", "USD"),
        ("stage", "qualified"),
        ("close", "+10w"),
    ],
    &[
        ("title", "Initech licences"),
        ("company", "Initech"),
        ("amount", "9000"),
        ("currency", "USD"),
        ("stage", "lead"),
    ],
    &[
        ("title", "Umbrella clinic systems"),
        ("company", "Umbrella Health"),
        ("contacts", "Alice Wong"),
        ("amount", "31000"),
        ("currency", "EUR"),
        ("stage", "lost"),
        ("lost_reason", "Chose an on-premise vendor"),
    ],
];

const ACTIVITIES: Rows = &[
    &[
        ("type", "call"),
        ("subject", "Discovery call with Ann"),
        ("about", "Ann Baker, Acme plant rollout"),
        ("when", "-7d"),
        ("body", "Needs rollout in three plants before Q3."),
    ],
    &[
        ("type", "meeting"),
        ("subject", "On-site demo at Acme"),
        ("about", "Acme Corporation, Acme plant rollout"),
        ("when", "+2d"),
    ],
    &[
        ("type", "task"),
        ("subject", "Send revised quote to Acme"),
        ("about", "Acme plant rollout"),
        ("due", "today"),
    ],
    &[
        ("type", "task"),
        ("subject", "Follow up with Nora on bundle pricing"),
        ("about", "Northwind reseller bundle"),
        ("due", "-2d"),
    ],
    &[
        ("type", "note"),
        ("subject", "Globex wants a pilot first"),
        ("about", "Globex grid pilot"),
        ("when", "-3d"),
    ],
    &[
        ("type", "email"),
        ("subject", "Licence quote sent"),
        ("about", "Initech licences, Peter Gibbons"),
        ("when", "-1d"),
    ],
];

const TICKETS: Rows = &[
    &[
        ("title", "Sensor firmware update fails"),
        ("company", "Acme Corporation"),
        ("person", "Carlos Diaz"),
        ("priority", "high"),
        ("status", "open"),
        ("owner", "Lee"),
    ],
    &[
        ("title", "Invoice address wrong"),
        ("company", "Northwind Traders"),
        ("person", "Nora Lind"),
        ("priority", "low"),
    ],
    &[
        ("title", "Dashboard login loop"),
        ("company", "Globex"),
        ("priority", "urgent"),
        ("status", "pending"),
        ("owner", "Lee"),
    ],
];

/// Consent the webinar's members gave (a campaign by webinar needs
/// consent to events), and one objection.
const CONSENTS: Rows = &[
    &[
        ("person", "Ann Baker"),
        ("purpose", "events"),
        ("date", "-30d"),
        ("source", "form"),
    ],
    &[
        ("person", "Nora Lind"),
        ("purpose", "events"),
        ("date", "-20d"),
        ("source", "call"),
    ],
    &[
        ("person", "Alice Wong"),
        ("purpose", "events"),
        ("date", "-12d"),
        ("source", "form"),
    ],
    &[
        ("person", "Alice Wong"),
        ("purpose", "profiling"),
        ("status", "objected"),
        ("date", "-5d"),
        ("source", "email"),
        ("notes", "asked not to be targeted by ads"),
    ],
];

const CAMPAIGNS: Rows = &[&[
    ("name", "Spring partner webinar"),
    ("channel", "webinar"),
    ("start", "+14d"),
    ("end", "+15d"),
    ("budget", "2500"),
    ("currency", "EUR"),
    ("members", "Ann Baker, Nora Lind, Alice Wong"),
]];

const PRODUCTS: Rows = &[
    &[
        ("name", "Plant licence"),
        ("sku", "PL-1"),
        ("price", "1000"),
        ("currency", "EUR"),
        ("category", "Licences"),
    ],
    &[
        ("name", "Onboarding"),
        ("sku", "ON-1"),
        ("price", "8000"),
        ("currency", "EUR"),
        ("category", "Services"),
    ],
    &[
        ("name", "Support plan"),
        ("sku", "SP-1"),
        ("price", "12000"),
        ("currency", "EUR"),
        ("category", "Services"),
    ],
];

/// Lines that come to the amounts their deals already have.
const LINE_ITEMS: Rows = &[
    &[
        ("deal", "Acme plant rollout"),
        ("product", "Plant licence"),
        ("quantity", "40"),
    ],
    &[("deal", "Acme plant rollout"), ("product", "Onboarding")],
    &[
        ("deal", "Acme support renewal"),
        ("product", "Support plan"),
    ],
];

/// Adds the demo records if the store has none; returns how many it added.
pub fn seed(repo: &Repo) -> Result<usize, NodeError> {
    if repo.store().record_count() > 0 {
        return Ok(0);
    }
    let mut added = 0;
    for (kind, rows) in [
        (Kind::Company, COMPANIES),
        (Kind::Person, PEOPLE),
        (Kind::Deal, DEALS),
        (Kind::Activity, ACTIVITIES),
        (Kind::Ticket, TICKETS),
        (Kind::Consent, CONSENTS),
        (Kind::Campaign, CAMPAIGNS),
        (Kind::Product, PRODUCTS),
        (Kind::LineItem, LINE_ITEMS),
    ] {
        let rows: Vec<Vec<Input>> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|(f, v)| (f.to_string(), v.to_string()))
                    .collect()
            })
            .collect();
        added += repo.create_many(kind, SpaceId::Private, &rows)?.len();
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OpenMode;

    #[test]
    fn demo_data_is_valid_and_seeded_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repo::open(tmp.path(), OpenMode::Create).expect("open");
        let n = seed(&repo).expect("seed");
        assert_eq!(n, 37);
        assert_eq!(seed(&repo).expect("again"), 0);
        let acme = repo.resolve("Acme Corporation").expect("acme");
        assert!(repo.related(acme.id).expect("related").len() >= 4);
        // Its lines come to what the deal said.
        let rollout = repo.resolve("Acme plant rollout").expect("deal");
        assert_eq!(repo.line_items(&rollout).expect("lines").len(), 2);
        assert_eq!(rollout.text("amount"), Some("48000.00"));
    }
}
