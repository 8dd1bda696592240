//! Which records are likely the same customer: sans-IO, over the views of
//! one kind, so it is tested on generated data and runs the same for the
//! CLI, the web UI and the API.
//!
//! Records are compared only within blocks that share a key (an e-mail, a
//! phone in E.164, a domain, the start of a normalised name, a company),
//! never all pairs: at 100k people a block is a handful of records. Pairs
//! that score are joined into clusters (union-find); a cluster's score is
//! its best pair's, its reasons every pair's.
//!
//! What counts, and its score (0–100):
//! - the same e-mail address, case aside (people): 100;
//! - the same phone number in E.164, read with the profile's region when
//!   it has no `+` (people, companies): 90;
//! - the same domain, `www.` and case aside, from `domain` or `website`
//!   (companies): 95;
//! - the same name once legal suffixes (GmbH, Inc., Ltd, AG, S.A., …) and
//!   punctuation are gone (companies): 90;
//! - names alike by Jaro-Winkler ≥ 0.92 (companies) or ≥ 0.90 for people
//!   at the same company: the similarity × 85 (companies) or × 80 (people).

use std::collections::{BTreeSet, HashMap};

use rapport_model::{FieldValue, Kind, RecordId, RecordView};
use serde::{Deserialize, Serialize};

/// Records likely to be one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub kind: Kind,
    /// 0–100: how sure; 100 is the same e-mail address.
    pub score: u8,
    /// Oldest first: the record a merge keeps by default.
    pub records: Vec<Member>,
    /// Why, in words ("same e-mail ada@example.com").
    pub reasons: Vec<String>,
}

/// A record of a cluster, with what to show for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: RecordId,
    pub title: String,
}

/// Reads phone numbers as E.164: with the profile's region (`DE`, `US`)
/// for numbers written without a `+`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phones {
    region: Option<phonenumber::country::Id>,
}

impl Phones {
    /// `region` as an ISO 3166 code; an unknown one is none.
    pub fn new(region: Option<&str>) -> Phones {
        Phones {
            region: region.and_then(|r| r.trim().to_ascii_uppercase().parse().ok()),
        }
    }

    /// The number in E.164, or, when it cannot be read as one, its digits
    /// (at least eight, so that extensions and fragments do not match).
    pub fn key(&self, raw: &str) -> Option<String> {
        // Only a number valid in its country ("100" parses, but is none).
        if let Ok(n) = phonenumber::parse(self.region, raw)
            && phonenumber::is_valid(&n)
        {
            return Some(n.format().mode(phonenumber::Mode::E164).to_string());
        }
        let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        (digits.len() >= 8).then_some(digits)
    }
}

/// What of a record is compared, normalised once.
#[derive(Debug)]
struct Keys {
    emails: Vec<String>,
    phones: Vec<String>,
    domain: Option<String>,
    name: String,
    company: Option<String>,
}

fn keys(view: &RecordView, phones: &Phones) -> Keys {
    let list = |f: &str| -> Vec<String> {
        view.get(f)
            .map(|v| match v {
                FieldValue::List(l) => l.clone(),
                FieldValue::Text(t) => vec![t.clone()],
                _ => Vec::new(),
            })
            .unwrap_or_default()
    };
    let mut phone_keys: Vec<String> = list("phones")
        .iter()
        .chain(list("phone").iter())
        .filter_map(|p| phones.key(p))
        .collect();
    phone_keys.sort();
    phone_keys.dedup();
    let domain = view
        .text("domain")
        .or_else(|| view.text("website"))
        .map(rapport_model::value::domain_key)
        .filter(|d| !d.is_empty() && !SHARED_HOSTS.contains(&d.as_str()))
        .filter(|_| view.kind == Kind::Company);
    Keys {
        emails: list("emails")
            .iter()
            .map(|e| e.trim().to_lowercase())
            .filter(|e| e.contains('@'))
            .collect(),
        phones: phone_keys,
        domain,
        name: match view.kind {
            Kind::Company => company_name(&view.title()),
            _ => person_name(&view.title()),
        },
        company: view.text("company").map(str::to_string),
    }
}

/// Hosts whose pages many companies have (a profile, not a website):
/// never a company's own domain.
const SHARED_HOSTS: &[&str] = &[
    "linkedin.com",
    "facebook.com",
    "twitter.com",
    "x.com",
    "instagram.com",
    "xing.com",
    "youtube.com",
    "github.com",
    "google.com",
    "sites.google.com",
    "wix.com",
    "wordpress.com",
    "tiktok.com",
    "yelp.com",
];

/// An address or number many records share (a switchboard, `info@`)
/// says nothing about which of them are one: a key held by more records
/// than this is not used.
const SHARED_KEY: usize = 5;

/// Legal forms left out of a company's name before names are compared.
const LEGAL_SUFFIXES: &[&str] = &[
    "gmbh",
    "mbh",
    "ag",
    "kg",
    "ohg",
    "gbr",
    "ug",
    "se",
    "inc",
    "incorporated",
    "corp",
    "corporation",
    "co",
    "company",
    "ltd",
    "limited",
    "llc",
    "llp",
    "plc",
    "lp",
    "sa",
    "sas",
    "sarl",
    "srl",
    "spa",
    "bv",
    "nv",
    "oy",
    "ab",
    "as",
    "aps",
    "pty",
    "kk",
    "sl",
    "sro",
];

fn words(name: &str) -> Vec<String> {
    name.to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '.')
        .map(|w| w.replace('.', ""))
        .filter(|w| !w.is_empty())
        .collect()
}

/// A company's name as compared: lower case, no punctuation, no legal
/// form at its end ("ACME, Inc." and "Acme GmbH & Co. KG" are both
/// "acme"; "AS Roma" keeps its "as").
pub fn company_name(name: &str) -> String {
    let words = words(name);
    let mut end = words.len();
    while end > 1 && (LEGAL_SUFFIXES.contains(&words[end - 1].as_str()) || words[end - 1] == "&") {
        end -= 1;
    }
    words[..end].join(" ")
}

/// A person's name as compared: lower case, no punctuation or honorific.
pub fn person_name(name: &str) -> String {
    const TITLES: &[&str] = &[
        "dr", "mr", "mrs", "ms", "prof", "herr", "frau", "sir", "jr", "sr",
    ];
    words(name)
        .into_iter()
        .filter(|w| !TITLES.contains(&w.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How alike two names are by Jaro-Winkler; names whose numbers differ
/// ("Store 12", "Store 13") are not alike at all.
fn alike(a: &str, b: &str) -> f64 {
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    if digits(a) != digits(b) {
        return 0.0;
    }
    strsim::jaro_winkler(a, b)
}

/// How alike two records are, with the reasons; `None` below any rule.
fn pair(a: &Keys, b: &Keys, kind: Kind) -> Option<(u8, Vec<String>)> {
    let mut score = 0u8;
    let mut reasons = Vec::new();
    let mut hit = |s: u8, why: String| {
        score = score.max(s);
        reasons.push(why);
    };
    for e in &a.emails {
        if b.emails.contains(e) {
            hit(100, format!("same e-mail {e}"));
        }
    }
    for p in &a.phones {
        if b.phones.contains(p) {
            hit(90, format!("same phone {p}"));
        }
    }
    match kind {
        Kind::Company => {
            if let (Some(x), Some(y)) = (&a.domain, &b.domain)
                && x == y
            {
                hit(95, format!("same domain {x}"));
            }
            if !a.name.is_empty() && a.name == b.name {
                hit(90, format!("same name ({})", a.name));
            } else {
                let sim = alike(&a.name, &b.name);
                if sim >= 0.92 {
                    hit(
                        (sim * 85.0) as u8,
                        format!("similar names ({:.0}% alike)", sim * 100.0),
                    );
                }
            }
        }
        _ => {
            if a.company.is_some() && a.company == b.company && !a.name.is_empty() {
                let sim = alike(&a.name, &b.name);
                if sim >= 0.90 {
                    hit(
                        (sim * 80.0) as u8,
                        format!(
                            "similar names at the same company ({:.0}% alike)",
                            sim * 100.0
                        ),
                    );
                }
            }
        }
    }
    (score > 0).then_some((score, reasons))
}

/// The largest block whose records are all compared with each other; a
/// larger one (a shared switchboard number, a common name start) is only
/// chained, or split finer.
const BLOCK: usize = 400;

/// Every cluster of likely duplicates among the live `records` of `kind`
/// (others are ignored), best first. Records in different spaces are
/// never paired: merging moves no record between spaces.
pub fn find(kind: Kind, records: &[RecordView], phones: &Phones) -> Vec<Cluster> {
    let live: Vec<&RecordView> = records
        .iter()
        .filter(|r| r.kind == kind && !r.deleted)
        .collect();
    let keys: Vec<Keys> = live.iter().map(|r| keys(r, phones)).collect();
    let mut found: HashMap<(usize, usize), (u8, Vec<String>)> = HashMap::new();
    let compare = |i: usize, j: usize, found: &mut HashMap<(usize, usize), (u8, Vec<String>)>| {
        let (i, j) = (i.min(j), i.max(j));
        if i == j || found.contains_key(&(i, j)) || live[i].space != live[j].space {
            return;
        }
        if let Some(p) = pair(&keys[i], &keys[j], kind) {
            found.insert((i, j), p);
        }
    };
    // Exact keys: every pair of a small block; a large one is chained, which
    // still joins it into one cluster.
    let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        for e in &k.emails {
            exact.entry(format!("e:{e}")).or_default().push(i);
        }
        for p in &k.phones {
            exact.entry(format!("p:{p}")).or_default().push(i);
        }
        if let Some(d) = &k.domain {
            exact.entry(format!("d:{d}")).or_default().push(i);
        }
    }
    for block in exact.values().filter(|b| b.len() <= SHARED_KEY) {
        each_pair(block, &mut |i, j| compare(i, j, &mut found));
    }
    // Names: companies by the start of their name, people by company and
    // the first letter of theirs.
    let mut names: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        let start: String = k.name.chars().take(3).collect();
        if start.is_empty() {
            continue;
        }
        let key = match (kind, &k.company) {
            (Kind::Company, _) => start,
            (_, Some(c)) => format!(
                "{c}:{}",
                &start[..start.chars().next().map_or(0, char::len_utf8)]
            ),
            (_, None) => continue,
        };
        names.entry(key).or_default().push(i);
    }
    for block in names.values() {
        if block.len() <= BLOCK {
            each_pair(block, &mut |i, j| compare(i, j, &mut found));
        } else {
            let mut finer: HashMap<String, Vec<usize>> = HashMap::new();
            for &i in block {
                finer
                    .entry(keys[i].name.chars().take(6).collect())
                    .or_default()
                    .push(i);
            }
            for b in finer.values() {
                each_pair(b, &mut |i, j| compare(i, j, &mut found));
            }
        }
    }
    clusters(kind, &live, found)
}

/// Every pair of a block of at most [`BLOCK`]; a longer one chained.
fn each_pair(block: &[usize], f: &mut dyn FnMut(usize, usize)) {
    if block.len() > BLOCK {
        for w in block.windows(2) {
            f(w[0], w[1]);
        }
        return;
    }
    for (n, &i) in block.iter().enumerate() {
        for &j in &block[n + 1..] {
            f(i, j);
        }
    }
}

fn clusters(
    kind: Kind,
    live: &[&RecordView],
    found: HashMap<(usize, usize), (u8, Vec<String>)>,
) -> Vec<Cluster> {
    let mut parent: Vec<usize> = (0..live.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for &(i, j) in found.keys() {
        let (a, b) = (root(&mut parent, i), root(&mut parent, j));
        if a != b {
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut by_root: HashMap<usize, (BTreeSet<usize>, u8, BTreeSet<String>)> = HashMap::new();
    for ((i, j), (score, reasons)) in found {
        let r = root(&mut parent, i);
        let c = by_root.entry(r).or_default();
        c.0.insert(i);
        c.0.insert(j);
        c.1 = c.1.max(score);
        c.2.extend(reasons);
    }
    let mut out: Vec<Cluster> = by_root
        .into_values()
        .map(|(members, score, reasons)| {
            let mut records: Vec<Member> = members
                .into_iter()
                .map(|i| Member {
                    id: live[i].id,
                    title: live[i].title(),
                })
                .collect();
            records.sort_by_key(|m| m.id);
            Cluster {
                kind,
                score,
                records,
                reasons: reasons.into_iter().collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then(b.records.len().cmp(&a.records.len()))
            .then(a.records[0].id.cmp(&b.records[0].id))
    });
    out
}

/// The records among `others` likely the same as `record`, best first,
/// each with its score and reasons: the warning on a form and a record
/// page.
pub fn like(
    record: &RecordView,
    others: &[RecordView],
    phones: &Phones,
) -> Vec<(Member, u8, Vec<String>)> {
    let mine = keys(record, phones);
    let mut out: Vec<(Member, u8, Vec<String>)> = others
        .iter()
        .filter(|o| {
            o.id != record.id && o.kind == record.kind && !o.deleted && o.space == record.space
        })
        .filter_map(|o| {
            let (score, reasons) = pair(&mine, &keys(o, phones), record.kind)?;
            Some((
                Member {
                    id: o.id,
                    title: o.title(),
                },
                score,
                reasons,
            ))
        })
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.id.cmp(&b.0.id)));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rapport_model::SpaceId;

    use super::*;

    fn view(n: u64, kind: Kind, fields: &[(&str, FieldValue)]) -> RecordView {
        RecordView {
            id: RecordId::new(1_700_000_000_000 + n, [n as u8; 10]),
            kind,
            space: SpaceId::Private,
            deleted: false,
            merged_into: None,
            updated: 0,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
            conflicts: BTreeMap::new(),
        }
    }

    fn text(s: &str) -> FieldValue {
        FieldValue::Text(s.into())
    }

    fn list(items: &[&str]) -> FieldValue {
        FieldValue::List(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn people_match_by_email_case_aside_and_by_phone_in_e164() {
        let people = vec![
            view(
                1,
                Kind::Person,
                &[
                    ("name", text("Ada Lovelace")),
                    ("emails", list(&["Ada@Example.com"])),
                ],
            ),
            view(
                2,
                Kind::Person,
                &[
                    ("name", text("A. Lovelace")),
                    ("emails", list(&["ada@example.com"])),
                ],
            ),
            view(
                3,
                Kind::Person,
                &[("name", text("Bob")), ("phones", list(&["030 1234567"]))],
            ),
            view(
                4,
                Kind::Person,
                &[
                    ("name", text("Robert")),
                    ("phones", list(&["+49 30 1234567"])),
                ],
            ),
            view(
                5,
                Kind::Person,
                &[
                    ("name", text("Carol")),
                    ("emails", list(&["carol@example.com"])),
                ],
            ),
        ];
        let found = find(Kind::Person, &people, &Phones::new(Some("de")));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].score, 100);
        assert_eq!(found[0].records[0].title, "Ada Lovelace", "oldest first");
        assert!(found[0].reasons[0].contains("ada@example.com"));
        assert_eq!(found[1].score, 90);
        assert!(found[1].reasons[0].contains("+49301234567"), "{found:?}");
        // Without a region a national number is only its digits: no match.
        assert_eq!(find(Kind::Person, &people, &Phones::default()).len(), 1);
    }

    #[test]
    fn keys_many_share_and_profile_hosts_pair_nothing() {
        let mut people: Vec<RecordView> = (0..8)
            .map(|n| {
                view(
                    n,
                    Kind::Person,
                    &[
                        ("name", text(&format!("Colleague {n}"))),
                        ("phones", list(&["+49 30 9999999"])),
                    ],
                )
            })
            .collect();
        people.push(view(
            20,
            Kind::Person,
            &[("name", text("Short")), ("phones", list(&["100"]))],
        ));
        people.push(view(
            21,
            Kind::Person,
            &[("name", text("Also")), ("phones", list(&["100"]))],
        ));
        assert!(find(Kind::Person, &people, &Phones::new(Some("DE"))).is_empty());
        let companies = vec![
            view(
                1,
                Kind::Company,
                &[
                    ("name", text("Alpha")),
                    ("website", text("https://linkedin.com/company/alpha")),
                ],
            ),
            view(
                2,
                Kind::Company,
                &[
                    ("name", text("Beta")),
                    ("website", text("https://www.linkedin.com/company/beta")),
                ],
            ),
            view(3, Kind::Company, &[("name", text("AS Roma"))]),
            view(4, Kind::Company, &[("name", text("Roma"))]),
        ];
        assert!(find(Kind::Company, &companies, &Phones::default()).is_empty());
    }

    #[test]
    fn companies_match_by_domain_and_by_name_without_legal_form() {
        let companies = vec![
            view(
                1,
                Kind::Company,
                &[("name", text("ACME, Inc.")), ("domain", text("acme.com"))],
            ),
            view(2, Kind::Company, &[("name", text("Acme GmbH"))]),
            view(
                3,
                Kind::Company,
                &[
                    ("name", text("Umbrella")),
                    ("website", text("https://www.Acme.com/about")),
                ],
            ),
            view(4, Kind::Company, &[("name", text("Initech Corporation"))]),
            view(5, Kind::Company, &[("name", text("Initec Corp."))]),
            view(6, Kind::Company, &[("name", text("Globex"))]),
            view(7, Kind::Company, &[("name", text("Store 12"))]),
            view(8, Kind::Company, &[("name", text("Store 13"))]),
        ];
        let found = find(Kind::Company, &companies, &Phones::default());
        assert_eq!(found.len(), 2, "{found:?}");
        let acme = &found[0];
        assert_eq!(acme.records.len(), 3, "{acme:?}");
        assert!(
            acme.reasons
                .iter()
                .any(|r| r.contains("same domain acme.com"))
        );
        assert!(acme.reasons.iter().any(|r| r.contains("same name (acme)")));
        assert!(found[1].reasons[0].contains("similar names"), "{found:?}");
    }

    #[test]
    fn people_with_alike_names_pair_only_at_the_same_company() {
        let people = vec![
            view(
                1,
                Kind::Person,
                &[("name", text("Jonathan Smith")), ("company", text("c1"))],
            ),
            view(
                2,
                Kind::Person,
                &[("name", text("Jonathon Smith")), ("company", text("c1"))],
            ),
            view(
                3,
                Kind::Person,
                &[("name", text("Jonathan Smith")), ("company", text("c2"))],
            ),
            view(4, Kind::Person, &[("name", text("Jonathan Smith"))]),
        ];
        let found = find(Kind::Person, &people, &Phones::default());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].records.len(), 2);
        let others: Vec<RecordView> = people[1..].to_vec();
        let like = like(&people[0], &others, &Phones::default());
        assert_eq!(like.len(), 1);
        assert_eq!(like[0].0.title, "Jonathon Smith");
    }

    #[test]
    fn blocking_finds_every_planted_pair_in_generated_data() {
        // Seeded: 5,000 distinct people and 200 planted doubles (an e-mail
        // in another case, or the same national phone number).
        let mut rng = 0x5eed_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut people = Vec::new();
        for n in 0..5_000u64 {
            let r = next();
            people.push(view(
                n,
                Kind::Person,
                &[
                    ("name", text(&format!("Person {r:x}"))),
                    ("emails", list(&[&format!("p{n}@example.com")])),
                    ("phones", list(&[&format!("+49 30 {:07}", n)])),
                ],
            ));
        }
        for n in 0..200u64 {
            let field = if n % 2 == 0 {
                ("emails", list(&[&format!("P{}@EXAMPLE.com", n * 7)]))
            } else {
                ("phones", list(&[&format!("030 {:07}", n * 7)]))
            };
            people.push(view(
                10_000 + n,
                Kind::Person,
                &[("name", text("Double")), field],
            ));
        }
        let found = find(Kind::Person, &people, &Phones::new(Some("DE")));
        assert_eq!(found.len(), 200);
        assert!(found.iter().all(|c| c.records.len() == 2));
    }
}
