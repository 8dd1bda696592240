//! Each report against records whose answers are worked out by hand here.

use std::collections::BTreeMap;

use jiff::civil::{Date, date};
use rapport_model::{FieldValue, Kind, RecordId, RecordView};

use super::*;

/// Builds records with ids made at chosen times.
#[derive(Default)]
struct Fixture {
    records: Vec<RecordView>,
    serial: u8,
}

fn ms(day: Date, hour: i8) -> u64 {
    day.at(hour, 0, 0, 0)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .map_or(0, |z| z.timestamp().as_millisecond() as u64)
}

impl Fixture {
    fn add(&mut self, kind: Kind, created: u64, fields: &[(&str, FieldValue)]) -> RecordId {
        self.serial += 1;
        let id = RecordId::new(created, [self.serial; 10]);
        let fields = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>();
        let mut v = RecordView::new(id, kind, fields);
        v.updated = (created / 1000) as i64;
        self.records.push(v);
        id
    }

    fn person(&mut self, name: &str, company: RecordId) -> RecordId {
        let company = company.to_string();
        let fields = [("name", t(name)), ("company", t(&company))];
        self.add(Kind::Person, ms(date(2025, 1, 1), 0), &fields)
    }

    /// A call on `when` (RFC 3339) about `about`.
    fn call_about(&mut self, when: &str, about: RecordId) -> RecordId {
        let day: jiff::Timestamp = when.parse().expect("an instant");
        let fields = [
            ("type", t("call")),
            ("when", t(when)),
            ("about", FieldValue::List(vec![about.to_string()])),
        ];
        self.add(Kind::Activity, day.as_millisecond() as u64, &fields)
    }

    fn company(&mut self, name: &str) -> RecordId {
        self.add(Kind::Company, ms(date(2025, 1, 1), 0), &[("name", t(name))])
    }

    /// A deal made on `created`, in `stage`, closing on `close`.
    fn deal(
        &mut self,
        company: RecordId,
        stage: &str,
        amount: &str,
        created: Date,
        close: Option<Date>,
        owner: &str,
    ) -> RecordId {
        let (amount, currency) = amount.split_once(' ').expect("AMOUNT CUR");
        let mut fields = vec![
            ("title", t("deal")),
            ("company", t(&company.to_string())),
            ("stage", t(stage)),
            ("amount", t(amount)),
            ("currency", t(currency)),
            ("owner", t(owner)),
        ];
        if let Some(c) = close {
            fields.push(("close", t(&c.to_string())));
        }
        self.add(Kind::Deal, ms(created, 9), &fields)
    }

    fn run(&self, q: Checked, today: Date, rates: Option<&Rates>) -> Report {
        let inputs = Inputs {
            records: &self.records,
            pipelines: &[],
            today,
            rates,
        };
        run(&q, &inputs)
    }
}

fn t(s: &str) -> FieldValue {
    FieldValue::Text(s.into())
}

fn query(name: ReportName) -> Checked {
    ReportQuery::new(name).check().expect("valid")
}

fn section<'r>(r: &'r Report, title: &str) -> &'r Section {
    r.sections
        .iter()
        .find(|s| s.title == title)
        .unwrap_or_else(|| panic!("no section {title} in {:?}", r.sections))
}

fn row<'s>(s: &'s Section, first: &str) -> Vec<&'s str> {
    s.rows
        .iter()
        .find(|r| r[0] == first)
        .unwrap_or_else(|| panic!("no row {first} in {}: {:?}", s.title, s.rows))
        .iter()
        .map(String::as_str)
        .collect()
}

/// Ann won two EUR deals (10 and 20 days), Bob lost one after 31 days and
/// won one in USD after 4; a deal lost and then reopened is open again.
fn sales_fixture() -> Fixture {
    let mut f = Fixture::default();
    let acme = f.company("Acme");
    let jan = date(2026, 1, 1);
    f.deal(acme, "won", "1000 EUR", jan, Some(date(2026, 1, 11)), "ann");
    f.deal(acme, "won", "500 EUR", jan, Some(date(2026, 1, 21)), "ann");
    f.deal(acme, "lost", "300 EUR", jan, Some(date(2026, 2, 1)), "bob");
    f.deal(
        acme,
        "proposal",
        "2000 EUR",
        jan,
        Some(date(2026, 2, 1)),
        "bob",
    );
    f.deal(
        acme,
        "won",
        "200 USD",
        date(2026, 2, 1),
        Some(date(2026, 2, 5)),
        "bob",
    );
    f
}

#[test]
fn win_rate_and_cycle_by_owner_month_and_velocity() {
    let f = sales_fixture();
    let r = f.run(query(ReportName::WinRate), date(2026, 3, 1), None);
    let owners = section(&r, "By owner");
    assert_eq!(
        row(owners, "ann"),
        ["ann", "2", "0", "100.0", "15.0", "1500.00 EUR"]
    );
    assert_eq!(
        row(owners, "bob"),
        ["bob", "1", "1", "50.0", "17.5", "200.00 USD"]
    );
    assert_eq!(
        row(owners, "all"),
        ["all", "3", "1", "75.0", "15.0", "1500.00 EUR; 200.00 USD"]
    );
    let months = section(&r, "By close month");
    assert_eq!(row(months, "2026-01")[1..4], ["2", "0", "100.0"]);
    assert_eq!(row(months, "2026-02")[1..4], ["1", "1", "50.0"]);
    // Average cycle (10 + 20 + 31 + 4) / 4 = 16.25 → 16 days; EUR: one
    // open deal, average won 750, 750 × 1 × 3/4 ÷ 16 = 35.15625.
    let v = section(&r, "Pipeline velocity");
    assert_eq!(
        row(v, "EUR"),
        ["EUR", "1", "750.00", "75.0", "16", "35.1563"]
    );
    assert_eq!(row(v, "USD"), ["USD", "0", "200.00", "75.0", "16", "0.00"]);
    assert!(
        r.notes.iter().any(|n| n.contains("per currency")),
        "{:?}",
        r.notes
    );

    // Only what closed in February.
    let mut q = query(ReportName::WinRate);
    q.from = Some(date(2026, 2, 1));
    let r = f.run(q, date(2026, 3, 1), None);
    assert_eq!(
        row(section(&r, "By owner"), "all")[1..4],
        ["1", "1", "50.0"]
    );

    // Converted at the user's rates, saying so.
    let rates = Rates::parse("EUR", &["USD=0.9".into()], "2026-02-20".into()).expect("rates");
    let mut q = query(ReportName::WinRate);
    q.convert = true;
    let r = f.run(q, date(2026, 3, 1), Some(&rates));
    assert_eq!(row(section(&r, "By owner"), "all")[5], "1680.00 EUR");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("converted to EUR") && n.contains("1 USD = 0.9 EUR")),
        "{:?}",
        r.notes
    );
}

#[test]
fn forecast_sums_best_committed_weighted_and_won_by_month_and_owner() {
    let mut f = Fixture::default();
    let acme = f.company("Acme");
    let jan = date(2026, 1, 1);
    let march = |d| Some(date(2026, 3, d));
    f.deal(acme, "proposal", "1000 EUR", jan, march(10), "ann");
    f.deal(acme, "negotiation", "2000 EUR", jan, march(20), "bob");
    f.deal(acme, "lead", "100 EUR", jan, None, "ann");
    f.deal(acme, "won", "300 EUR", jan, march(2), "ann");
    f.deal(acme, "lost", "999 EUR", jan, march(2), "ann");
    let r = f.run(query(ReportName::Forecast), date(2026, 2, 1), None);
    let m = section(&r, "By month, EUR");
    assert_eq!(
        m.columns[2..],
        [
            "best case (EUR)",
            "committed (EUR)",
            "weighted (EUR)",
            "won (EUR)"
        ]
    );
    assert_eq!(
        m.rows,
        [
            ["2026-03", "2", "3000.00", "2000.00", "2000.00", "300.00"],
            ["(no date)", "1", "100.00", "0.00", "10.00", "0.00"],
        ]
    );
    let o = section(&r, "By month and owner, EUR");
    assert_eq!(
        o.rows,
        [
            ["2026-03", "ann", "1", "1000.00", "0.00", "500.00", "300.00"],
            [
                "2026-03", "bob", "1", "2000.00", "2000.00", "1500.00", "0.00"
            ],
            ["(no date)", "ann", "1", "100.00", "0.00", "10.00", "0.00"],
        ]
    );
}

#[test]
fn a_stage_is_committed_from_negotiation_on_or_else_by_probability() {
    use rapport_model::custom::StageDef;
    let sales = Pipeline::sales();
    let stage = |name: &str| sales.stage(name).cloned().expect("stage");
    assert!(!committed(&sales, &stage("proposal")));
    assert!(committed(&sales, &stage("negotiation")));
    assert!(!committed(&sales, &stage("won")), "won is not open");
    let renewals = Pipeline {
        name: "renewals".into(),
        label: "Renewals".into(),
        stages: vec![
            StageDef {
                name: "due".into(),
                probability: 60,
                outcome: None,
            },
            StageDef {
                name: "quoted".into(),
                probability: 85,
                outcome: None,
            },
        ],
        retired: false,
    };
    assert!(!committed(&renewals, &renewals.stages[0]));
    assert!(committed(&renewals, &renewals.stages[1]));
}

/// Won revenue 500, 300, 100, 50, 50 (EUR): the line at 80 % falls
/// exactly after the second; the last two tie across the 95 % line.
fn abc_fixture() -> Fixture {
    let mut f = Fixture::default();
    let jan = date(2026, 1, 1);
    let close = Some(date(2026, 1, 15));
    for (name, amounts) in [
        ("Acme", &["300 EUR", "200 EUR"][..]),
        ("Beta", &["300 EUR"]),
        ("Cora", &["100 EUR"]),
        ("Echo", &["50 EUR"]),
        ("Dino", &["50 EUR"]),
    ] {
        let c = f.company(name);
        for a in amounts {
            f.deal(c, "won", a, jan, close, "ann");
        }
    }
    let acme = f.records[0].id;
    f.deal(acme, "won", "100 USD", jan, close, "ann");
    f.deal(acme, "proposal", "9000 EUR", jan, close, "ann");
    f
}

#[test]
fn abc_classes_break_at_the_shares_and_ties_share_a_class() {
    let f = abc_fixture();
    let r = f.run(query(ReportName::Abc), date(2026, 2, 1), None);
    let list = section(&r, "Customers by won revenue, EUR");
    assert_eq!(
        list.rows,
        [
            ["1", "Acme", "500.00", "50.0", "50.0", "A"],
            ["2", "Beta", "300.00", "30.0", "80.0", "A"],
            ["3", "Cora", "100.00", "10.0", "90.0", "B"],
            ["4", "Dino", "50.00", "5.0", "95.0", "B"],
            // Above it is 95 %, C by itself; tied with Dino, so B.
            ["5", "Echo", "50.00", "5.0", "100.0", "B"],
        ]
    );
    assert_eq!(
        section(&r, "Classes, EUR").rows,
        [
            ["A", "2", "800.00", "80.0"],
            ["B", "3", "200.00", "20.0"],
            ["C", "0", "0.00", "0.0"],
        ]
    );
    // Another currency is its own ranking: one customer, all of it.
    assert_eq!(
        section(&r, "Customers by won revenue, USD").rows,
        [["1", "Acme", "100.00", "100.0", "100.0", "A"]]
    );

    // Lines moved: A ends at 50 %, B at 90 %.
    let mut q = ReportQuery::new(ReportName::Abc);
    q.abc = Some("50,90".into());
    let r = f.run(q.check().expect("valid"), date(2026, 2, 1), None);
    let classes: Vec<&str> = section(&r, "Customers by won revenue, EUR")
        .rows
        .iter()
        .map(|r| r[5].as_str())
        .collect();
    assert_eq!(classes, ["A", "B", "B", "C", "C"]);
}

#[test]
fn abc_with_no_deals_has_nothing_and_one_deal_is_all_a() {
    let mut f = Fixture::default();
    let r = f.run(query(ReportName::Abc), date(2026, 2, 1), None);
    assert!(r.sections.is_empty());
    let acme = f.company("Acme");
    f.deal(
        acme,
        "won",
        "10 EUR",
        date(2026, 1, 1),
        Some(date(2026, 1, 2)),
        "ann",
    );
    let r = f.run(query(ReportName::Abc), date(2026, 2, 1), None);
    assert_eq!(
        section(&r, "Customers by won revenue, EUR").rows,
        [["1", "Acme", "10.00", "100.0", "100.0", "A"]]
    );
}

/// Five customers: (days since the last purchase, won deals, each worth).
fn rfm_fixture(today: Date) -> Fixture {
    let mut f = Fixture::default();
    for (name, days, deals, each) in [
        ("C1", 10, 5, "1000"),
        ("C2", 29, 4, "1000"),
        ("C3", 60, 3, "1000"),
        ("C4", 121, 4, "500"),
        ("C5", 181, 1, "1000"),
    ] {
        let c = f.company(name);
        let last = today - jiff::Span::new().days(days);
        for i in 0..deals {
            let close = last - jiff::Span::new().days(i * 7);
            f.deal(
                c,
                "won",
                &format!("{each} EUR"),
                date(2025, 1, 1),
                Some(close),
                "ann",
            );
        }
    }
    f
}

#[test]
fn rfm_scores_quintiles_and_names_segments() {
    let today = date(2026, 6, 30);
    let mut f = rfm_fixture(today);
    let r = f.run(query(ReportName::Rfm), today, None);
    let list = section(&r, "Customers, EUR");
    // R: fewer days is better; F: C2 and C4 tie at 4 deals and share the
    // higher score; M: C4's 2000 is below C3's 3000.
    let code = |name: &str| row(list, name)[5..].join(" ");
    assert_eq!(code("C1"), "5 5 5 champions");
    assert_eq!(code("C2"), "4 4 4 champions");
    assert_eq!(code("C3"), "3 2 3 promising");
    assert_eq!(code("C4"), "2 4 2 at risk");
    assert_eq!(code("C5"), "1 1 1 lost");
    assert_eq!(row(list, "C4")[1..5], ["2026-03-01", "121", "4", "2000.00"]);
    let segments = section(&r, "Segments, EUR");
    assert_eq!(row(segments, "champions"), ["champions", "2", "9000.00"]);
    assert_eq!(row(segments, "loyal"), ["loyal", "0", "0.00"]);

    // An activity about one of C5's people makes it the most recent.
    let c5 = f.records.iter().find(|r| r.title() == "C5").expect("C5").id;
    let person = f.person("Pat", c5);
    f.call_about("2026-06-25T10:00:00Z", person);
    let r = f.run(query(ReportName::Rfm), today, None);
    let c5 = row(section(&r, "Customers, EUR"), "C5");
    assert_eq!(c5[1..3], ["2026-06-25", "5"]);
    assert_eq!(c5[5], "5");
}

#[test]
fn churn_lists_each_customer_with_its_reasons() {
    let today = date(2026, 6, 30);
    let mut f = Fixture::default();
    let quiet = f.company("Quiet");
    f.deal(
        quiet,
        "won",
        "1 EUR",
        date(2025, 1, 1),
        Some(date(2026, 1, 10)),
        "ann",
    );
    let falling = f.company("Falling");
    for m in 1..=3 {
        let close = Some(date(2026, m, 1));
        f.deal(falling, "won", "1 EUR", date(2025, 1, 1), close, "ann");
    }
    f.call_about("2026-06-20T10:00:00Z", falling);
    let urgent = f.company("Urgent");
    for status in ["open", "new", "resolved"] {
        f.add(
            Kind::Ticket,
            ms(date(2026, 6, 1), 0),
            &[
                ("title", t("down")),
                ("status", t(status)),
                ("priority", t("urgent")),
                ("company", t(&urgent.to_string())),
            ],
        );
    }
    let healthy = f.company("Healthy");
    f.deal(
        healthy,
        "won",
        "1 EUR",
        date(2025, 1, 1),
        Some(date(2026, 6, 1)),
        "ann",
    );
    f.company("Prospect");

    let r = f.run(query(ReportName::Churn), today, None);
    let s = &r.sections[0];
    let listed: Vec<(&str, &str)> = s
        .rows
        .iter()
        .map(|r| (r[0].as_str(), r[2].as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("Urgent", "no activity recorded; 2 open urgent tickets"),
            ("Quiet", "no activity for 171 days"),
            (
                "Falling",
                "buying less often: last purchase 121 days ago, usually every 29 days"
            ),
        ]
    );
    let mut q = ReportQuery::new(ReportName::Churn);
    q.days = Some(200);
    let r = f.run(q.check().expect("valid"), today, None);
    assert!(!r.sections[0].rows.iter().any(|r| r[0] == "Quiet"));
}

#[test]
fn service_counts_tickets_times_and_backlog() {
    let mut f = Fixture::default();
    let ticket =
        |f: &mut Fixture, day: Date, status: &str, priority: &str, resolved: Option<&str>| {
            let mut fields = vec![
                ("title", t("x")),
                ("status", t(status)),
                ("priority", t(priority)),
            ];
            if let Some(r) = resolved {
                fields.push(("resolved", t(r)));
            }
            f.add(Kind::Ticket, ms(day, 0), &fields)
        };
    let about = |f: &mut Fixture, ticket: RecordId, kind: &str, when: &str| {
        f.add(
            Kind::Activity,
            ms(date(2026, 1, 1), 0),
            &[
                ("type", t(kind)),
                ("when", t(when)),
                ("about", FieldValue::List(vec![ticket.to_string()])),
            ],
        );
    };
    let t1 = ticket(
        &mut f,
        date(2026, 5, 1),
        "resolved",
        "urgent",
        Some("2026-05-01T10:00:00Z"),
    );
    // A call logged before the ticket was opened is no response to it.
    about(&mut f, t1, "call", "2026-04-30T20:00:00Z");
    about(&mut f, t1, "call", "2026-05-01T02:00:00Z");
    let t2 = ticket(&mut f, date(2026, 5, 2), "open", "normal", None);
    about(&mut f, t2, "email", "2026-05-02T04:00:00Z");
    about(&mut f, t2, "note", "2026-05-03T04:00:00Z");
    let t3 = ticket(&mut f, date(2026, 6, 1), "closed", "normal", None);
    // Closed without a `resolved` time: its last change counts.
    f.records.last_mut().expect("t3").updated = ms(date(2026, 6, 2), 0) as i64 / 1000;
    about(&mut f, t3, "task", "2026-06-01T01:00:00Z");
    ticket(&mut f, date(2026, 6, 10), "new", "low", None);

    let mut q = ReportQuery::new(ReportName::Service);
    q.from = Some("2026-05-01".into());
    q.to = Some("2026-06-30".into());
    let r = f.run(q.check().expect("valid"), date(2026, 7, 15), None);
    let grid = section(&r, "Tickets by status and priority");
    assert_eq!(
        grid.columns,
        ["status", "low", "normal", "high", "urgent", "total"]
    );
    assert_eq!(row(grid, "new"), ["new", "1", "0", "0", "0", "1"]);
    assert_eq!(row(grid, "open"), ["open", "0", "1", "0", "0", "1"]);
    assert_eq!(row(grid, "resolved"), ["resolved", "0", "0", "0", "1", "1"]);
    assert_eq!(row(grid, "closed"), ["closed", "0", "1", "0", "0", "1"]);
    let times = section(&r, "Response and resolution");
    // Responses after 2 h and 4 h (a task is none); resolved after 10 h
    // and 24 h.
    assert_eq!(row(times, "all"), ["all", "4", "3.0", "17.0", "2"]);
    assert_eq!(row(times, "urgent"), ["urgent", "1", "2.0", "10.0", "0"]);
    assert_eq!(row(times, "high"), ["high", "0", "–", "–", "0"]);
    assert_eq!(
        section(&r, "Backlog by month").rows,
        [["2026-05", "2", "1", "1"], ["2026-06", "2", "1", "2"]]
    );
}

#[test]
fn campaigns_credit_the_deals_their_members_touched_after_the_start() {
    let mut f = Fixture::default();
    let acme = f.company("Acme");
    let other = f.company("Other");
    let pat = f.person("Pat", acme);
    f.add(
        Kind::Campaign,
        ms(date(2026, 2, 1), 0),
        &[
            ("name", t("Spring")),
            ("channel", t("email")),
            ("start", t("2026-03-01")),
            ("members", FieldValue::List(vec![pat.to_string()])),
        ],
    );
    let with_pat = f.deal(other, "won", "1000 EUR", date(2026, 3, 5), None, "ann");
    f.records
        .iter_mut()
        .find(|r| r.id == with_pat)
        .expect("deal")
        .fields
        .insert("contacts".into(), FieldValue::List(vec![pat.to_string()]));
    f.deal(acme, "proposal", "500 EUR", date(2026, 3, 10), None, "ann");
    f.deal(acme, "won", "700 EUR", date(2026, 2, 1), None, "ann");
    f.deal(other, "won", "900 EUR", date(2026, 4, 1), None, "ann");
    let r = f.run(query(ReportName::Campaigns), date(2026, 5, 1), None);
    assert_eq!(
        r.sections[0].rows,
        [[
            "Spring",
            "email",
            "2026-03-01",
            "1",
            "2",
            "1",
            "1000.00 EUR"
        ]]
    );
}

#[test]
fn a_query_is_refused_with_the_field_and_what_to_type() {
    let mut q = ReportQuery::new(ReportName::Forecast);
    q.from = Some("March".into());
    assert_eq!(q.check().map_err(|e| e.0), Err("from"));
    q.from = Some("2026-03-01".into());
    q.to = Some("2026-02-01".into());
    let (field, message) = q.check().expect_err("to before from");
    assert_eq!(field, "to");
    assert!(message.contains("before"), "{message}");
    q.to = None;
    for bad in ["80", "95,80", "0,50", "50,101", "a,b"] {
        q.abc = Some(bad.into());
        assert_eq!(q.check().map_err(|e| e.0), Err("abc"), "{bad}");
    }
    q.abc = Some("70%, 90%".into());
    assert_eq!(q.check().expect("valid").abc, (70, 90));
    q.days = Some(0);
    assert_eq!(q.check().map_err(|e| e.0), Err("days"));
    assert_eq!("win_rate".parse::<ReportName>(), Ok(ReportName::WinRate));
    assert_eq!(median(&mut [-2, -1]), "-1.5");
    assert_eq!(median(&mut [3, 1, 2]), "2.0");
    assert_eq!(median(&mut []), "–");
    let e = "pareto".parse::<ReportName>().expect_err("unknown");
    assert!(e.contains("abc") && e.contains("churn"), "{e}");
}

/// Baskets, by customer, of products on won deals' lines (Fax is no
/// longer sold):
/// Acme {Seat, Training} + {Support} in a second deal, Beta {Seat,
/// Training}, Cora {Support}, Dune {Training} (its lost deal's Seat does
/// not count), Fern {Fax, Support}; Echo's deal is open. n = 5 customers.
#[test]
fn cross_selling_pairs_and_look_alikes() {
    let mut f = Fixture::default();
    let product = |f: &mut Fixture, name: &str, active: bool| {
        let fields = [("name", t(name)), ("active", FieldValue::Flag(active))];
        f.add(Kind::Product, ms(date(2025, 1, 1), 0), &fields)
    };
    let seat = product(&mut f, "Seat", true);
    let training = product(&mut f, "Training", true);
    let support = product(&mut f, "Support", true);
    let fax = product(&mut f, "Fax", false);
    let day = date(2026, 3, 1);
    let won = |f: &mut Fixture, company: &str, stage: &str, products: &[RecordId]| {
        let c = match f.records.iter().find(|r| r.title() == company) {
            Some(c) => c.id,
            None => f.company(company),
        };
        let deal = f.deal(c, stage, "100 EUR", day, Some(day), "ann");
        for p in products {
            let fields = [
                ("deal", t(&deal.to_string())),
                ("product", t(&p.to_string())),
                ("quantity", t("1")),
            ];
            f.add(Kind::LineItem, ms(day, 10), &fields);
        }
        // A line without a product says nothing.
        f.add(
            Kind::LineItem,
            ms(day, 11),
            &[("deal", t(&deal.to_string()))],
        );
    };
    won(&mut f, "Acme", "won", &[seat, training]);
    won(&mut f, "Acme", "won", &[support]);
    won(&mut f, "Beta", "won", &[seat, training]);
    won(&mut f, "Cora", "won", &[support]);
    won(&mut f, "Dune", "won", &[training]);
    won(&mut f, "Dune", "lost", &[seat]);
    won(&mut f, "Echo", "proposal", &[seat, support]);
    won(&mut f, "Fern", "won", &[fax, support]);
    let today = date(2026, 4, 1);

    let r = f.run(query(ReportName::CrossSell), today, None);
    let pairs = &r.sections[0];
    assert!(pairs.title.contains("by 5 customers"), "{}", pairs.title);
    // Only Seat and Training are bought together by two customers (Acme,
    // Beta): support 2/5; Seat's 2 buyers both bought Training, 2 of
    // Training's 3 bought Seat; lift 2·5 / (2·3) = 1.67 both ways.
    assert_eq!(
        pairs.rows,
        [
            [
                "Seat → Training",
                "Seat",
                "Training",
                "2",
                "40.0",
                "100.0",
                "1.67"
            ],
            [
                "Training → Seat",
                "Training",
                "Seat",
                "2",
                "40.0",
                "66.7",
                "1.67"
            ],
        ]
    );

    // Dune {Training}: Beta {Seat, Training} is 1/2 alike, Acme 1/3; Seat
    // scores both (0.5 + 0.3333), Support Acme's alone.
    let mut q = query(ReportName::CrossSell);
    q.customer = Some("dune".into());
    let r = f.run(q.clone(), today, None);
    assert_eq!(
        r.sections[1].rows,
        [
            ["Dune", "Seat", "Beta, Acme", "0.83"],
            ["Dune", "Support", "Acme", "0.33"],
        ]
    );
    // Cora {Support}: Fern is 1/2 alike but bought only Fax, no longer
    // sold; Acme, 1/3 alike, bought Seat and Training.
    q.customer = Some("cora".into());
    let r = f.run(q.clone(), today, None);
    assert_eq!(
        r.sections[1].rows,
        [
            ["Cora", "Seat", "Acme", "0.33"],
            ["Cora", "Training", "Acme", "0.33"],
        ]
    );
    q.customer = Some("nobody".into());
    let r = f.run(q, today, None);
    assert!(r.sections[1].rows.is_empty());
    assert!(r.sections[1].title.contains("no customer `nobody`"));

    // Without a customer: those with the most won deals, Acme (2) first,
    // then by name. Acme's look-alikes bought nothing it has not (Fax is
    // not sold); Beta {Seat, Training} is 2/3 like Acme, which bought
    // Support.
    let r = f.run(query(ReportName::CrossSell), today, None);
    assert!(r.sections[1].title.contains("for the 5 customers"));
    assert_eq!(r.sections[1].rows[0], ["Beta", "Support", "Acme", "0.67"]);
    // No products bought: nothing, and the title says why.
    let r = Fixture::default().run(query(ReportName::CrossSell), today, None);
    assert!(r.sections[0].rows.is_empty());
    assert!(
        r.sections[0].title.contains("none yet"),
        "{}",
        r.sections[0].title
    );
}
