//! The `rapport` binary, driven as a user would: the README tour, each
//! record kind, references, history, the pipeline, export, and bad input.

mod common;

use common::Node;
use serde_json::Value;

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

#[test]
fn up_demo_starts_a_node_that_commands_talk_to() {
    let n = Node::new();
    let mut node = n.start(&["--demo"]);
    // While the node runs, commands go through its local API.
    let companies = n.json(&["list", "company"]);
    assert_eq!(companies.as_array().expect("array").len(), 5);
    let table = n.ok(&["list", "deal"]);
    assert!(
        table.contains("Acme plant rollout") && table.contains("negotiation"),
        "{table}"
    );
    let show = n.ok(&["show", "Acme Corporation"]);
    assert!(
        show.contains("acme.example") && show.contains("Ann Baker"),
        "{show}"
    );
    let status = n.json(&["status"]);
    assert_eq!(status["running"], true);
    // A second node on the same data directory is refused.
    let err = n.fails(&["up", "--bind", "127.0.0.1:0", "--no-mdns"]);
    assert!(err.contains("already running"), "{err}");
    node.stop();
    assert!(
        !n.dir.join("api.json").exists(),
        "a clean stop removes api.json"
    );
    // Starting it again keeps the data and adds nothing.
    n.demo();
    assert_eq!(
        n.json(&["list", "company"])
            .as_array()
            .expect("array")
            .len(),
        5
    );
    assert_eq!(n.json(&["status"])["running"], false);
}

#[test]
fn records_of_every_kind_are_created_shown_and_listed() {
    let n = Node::new();
    n.ok(&["init", "--name", "Dana", "--org", "Acme Sales"]);
    let acme = n.json(&[
        "company",
        "add",
        "Acme",
        "--domain",
        "https://www.acme.com",
        "--tag",
        "key",
    ]);
    assert_eq!(acme["kind"], "company");
    assert_eq!(acme["domain"], "acme.com");
    let ann = n.json(&[
        "person",
        "add",
        "Ann Baker",
        "--email",
        "ann@acme.com",
        "--email",
        "a.baker@acme.com",
        "--company",
        "acme",
        "--title",
        "Buyer",
    ]);
    assert_eq!(ann["company"], acme["id"]);
    assert_eq!(ann["emails"].as_array().expect("emails").len(), 2);
    let deal = n.json(&[
        "deal",
        "add",
        "Rollout",
        "--company",
        "Acme",
        "--contact",
        "Ann Baker",
        "--amount",
        "1200.50",
        "--currency",
        "eur",
        "--stage",
        "proposal",
    ]);
    assert_eq!(deal["amount"], "1200.50");
    assert_eq!(deal["currency"], "EUR");
    assert_eq!(deal["probability"], 50, "probability follows the stage");
    let task = n.json(&[
        "activity",
        "add",
        "task",
        "--about",
        "Rollout",
        "--text",
        "Send quote",
        "--due",
        "2026-12-01",
    ]);
    assert_eq!(task["subject"], "Send quote");
    assert_eq!(task["done"], Value::Null);
    let ticket = n.json(&[
        "ticket",
        "add",
        "Login broken",
        "--about",
        "Ann Baker",
        "--priority",
        "urgent",
    ]);
    assert_eq!(ticket["person"], ann["id"]);
    assert_eq!(
        ticket["company"], acme["id"],
        "a person's company is filled in"
    );
    assert_eq!(ticket["status"], "new");
    // A webinar takes only people who consented to events.
    let consent = n.json(&[
        "consent",
        "add",
        "Ann Baker",
        "--purpose",
        "events",
        "--source",
        "form",
    ]);
    assert_eq!(consent["person"], ann["id"]);
    assert_eq!(consent["status"], "granted");
    let campaign = n.json(&[
        "campaign",
        "add",
        "Spring webinar",
        "--channel",
        "webinar",
        "--start",
        "2026-03-01",
        "--end",
        "2026-03-02",
        "--budget",
        "2500",
        "--currency",
        "EUR",
        "--member",
        "Ann Baker",
    ]);
    assert_eq!(campaign["members"][0], ann["id"]);

    // show --json: the record by name, fields by name.
    let shown = n.json(&["show", &id_of(&ann)[..12]]);
    assert_eq!(shown["name"], "Ann Baker");
    assert_eq!(shown["kind"], "person");
    assert_eq!(shown["emails"][0], "ann@acme.com");

    let done = n.json(&["task", "done", "Send quote"]);
    assert_eq!(done["done"], true);
    let err = n.fails(&["task", "done", "Login broken"]);
    assert!(err.contains("activity"), "{err}");

    let people = n.json(&["list", "person", "--where", "company=Acme"]);
    assert_eq!(people.as_array().expect("array").len(), 1);
    let none = n.json(&["list", "deal", "--where", "stage=won"]);
    assert!(none.as_array().expect("array").is_empty());
}

/// `rapport KIND add --help` lists the kind's custom fields, which only
/// the data directory knows, and `--set` fills them; before there is a
/// data directory, help is clap's alone and creates nothing.
#[test]
fn adding_a_record_shows_and_takes_the_kinds_custom_fields() {
    let n = Node::new();
    let help = n.ok(&["company", "add", "--help"]);
    assert!(help.contains("--domain"), "{help}");
    assert!(!n.dir.exists(), "help created the data directory");
    n.ok(&["init", "--name", "Dana"]);
    n.ok(&[
        "schema",
        "field",
        "add",
        "company",
        "tier",
        "--type",
        "choice",
        "--choices",
        "gold,silver",
        "--label",
        "Customer tier",
    ]);
    let help = n.ok(&["company", "add", "--help"]);
    assert!(
        help.contains("Custom fields in your private space:"),
        "{help}"
    );
    assert!(
        help.contains("--set tier=VALUE  Customer tier (choice: gold, silver)"),
        "{help}"
    );
    let deal_help = n.ok(&["deal", "add", "-h"]);
    assert!(!deal_help.contains("tier"), "{deal_help}");
    let acme = n.json(&["company", "add", "Acme", "--set", "tier=Gold"]);
    assert_eq!(acme["tier"], "gold");
}

/// A kind, a pipeline and a ticket status of your own, from the command
/// line: `rapport add KIND`, `list`, `show` (the company lists the
/// contract that refers to it), export, `rapport pipeline`, and the
/// errors a typo gets.
#[test]
fn kinds_pipelines_and_statuses_of_your_own() {
    let n = Node::new();
    n.ok(&["init", "--name", "Dana"]);
    let err = n.fails(&["add", "contract", "ACME-2027"]);
    assert!(err.contains("unknown record kind `contract`"), "{err}");
    n.ok(&[
        "schema",
        "kind",
        "add",
        "contract",
        "--title-label",
        "Contract number",
    ]);
    n.ok(&[
        "schema", "field", "add", "contract", "ends", "--type", "date",
    ]);
    n.ok(&[
        "schema",
        "field",
        "add",
        "company",
        "contract",
        "--type",
        "reference",
        "--to",
        "contract",
    ]);
    let help = n.ok(&["add", "contract", "--help"]);
    assert!(help.contains("--set ends=VALUE"), "{help}");
    let contract = n.json(&["add", "contract", "ACME-2027", "--set", "ends=2027-03-31"]);
    assert_eq!(
        (&contract["kind"], &contract["name"]),
        (&"contract".into(), &"ACME-2027".into())
    );
    let err = n.fails(&["add", "contract", "X", "--set", "ends=soon"]);
    assert!(err.contains("ends"), "{err}");
    n.ok(&["company", "add", "Acme", "--set", "contract=ACME-2027"]);
    let shown = n.ok(&["show", "Acme"]);
    assert!(shown.contains("ACME-2027"), "{shown}");
    let listed = n.json(&["list", "contract", "--where", "ends<=2027-06-30"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // A full export and the search index hold records of the kind too.
    let out = tempfile::tempdir().expect("tempdir");
    n.ok(&["export", "--out", out.path().to_str().expect("utf8")]);
    let exported =
        std::fs::read_to_string(out.path().join("contract.json")).expect("contract.json");
    assert!(exported.contains("ACME-2027"), "{exported}");
    let found = n.ok(&["search", "acme-20"]);
    assert!(found.contains("ACME-2027"), "{found}");
    let err = n.fails(&["list", "contracts"]);
    assert!(
        err.contains(
            "use one of company, person, deal, activity, ticket, campaign, product, line_item, consent, contract"
        ),
        "{err}"
    );
    let err = n.fails(&["schema", "kind", "add", "Site Visit"]);
    assert!(err.contains("not a kind name"), "{err}");

    n.ok(&[
        "schema",
        "pipeline",
        "add",
        "renewals",
        "--label",
        "Renewals",
        "--stages",
        "due:60, quoted:85, renewed:100:won, churned:0:lost",
    ]);
    let deal = n.json(&[
        "deal",
        "add",
        "Acme 2027",
        "--company",
        "Acme",
        "--pipeline",
        "renewals",
        "--amount",
        "1000",
        "--currency",
        "EUR",
    ]);
    assert_eq!(
        (&deal["pipeline"], &deal["stage"]),
        (&"renewals".into(), &"due".into())
    );
    let err = n.fails(&["edit", "Acme 2027", "--set", "stage=won"]);
    assert!(
        err.contains("not a stage of the Renewals pipeline"),
        "{err}"
    );
    let report = n.json(&["pipeline", "--name", "renewals"]);
    assert_eq!(report[0]["stage"], "due");
    assert_eq!(report[0]["currencies"]["EUR"]["weighted"], "600.00");
    let all = n.ok(&["pipeline"]);
    assert!(
        all.contains("Renewals pipeline") && all.contains("Sales pipeline"),
        "{all}"
    );
    let err = n.fails(&["schema", "pipeline", "add", "x", "--stages", "a:1:maybe"]);
    assert!(err.contains("is not a stage"), "{err}");

    n.ok(&[
        "schema",
        "field",
        "add-choice",
        "ticket",
        "status",
        "waiting",
    ]);
    let ticket = n.json(&["ticket", "add", "Printer", "--status", "Waiting"]);
    assert_eq!(ticket["status"], "waiting");
    let err = n.fails(&[
        "schema",
        "field",
        "rename-choice",
        "ticket",
        "status",
        "closed",
        "done",
    ]);
    assert!(err.contains("ends a ticket"), "{err}");
}

#[test]
fn edits_deletes_and_the_timeline() {
    let n = Node::new();
    n.ok(&["init", "--name", "Dana", "--org", "Acme Sales"]);
    n.ok(&["company", "add", "Acme"]);
    n.ok(&["deal", "add", "Rollout", "--company", "Acme"]);
    let edited = n.json(&[
        "edit",
        "Rollout",
        "--set",
        "stage=won",
        "--set",
        "amount=10",
        "--set",
        "currency=USD",
    ]);
    assert_eq!(edited["stage"], "won");
    assert_eq!(edited["probability"], 100);
    let edited = n.json(&[
        "edit",
        "Rollout",
        "--unset",
        "amount",
        "--set",
        "probability=80",
    ]);
    assert_eq!(edited.get("amount"), None);
    assert_eq!(edited["probability"], 80);
    n.ok(&[
        "activity",
        "add",
        "call",
        "--about",
        "Rollout",
        "--subject",
        "Kick-off",
        "--when",
        "2999-01-01 09:00",
    ]);

    let timeline = n.json(&["timeline", "Rollout"]);
    let entries = timeline.as_array().expect("array");
    assert_eq!(entries.len(), 4, "{timeline:#}");
    assert_eq!(entries[0]["type"], "activity");
    assert_eq!(entries[0]["subject"], "Kick-off");
    assert_eq!(entries[1]["action"], "edited");
    assert_eq!(entries[1]["author"], "Dana (Acme Sales)");
    assert_eq!(entries[1]["verified"], true);
    let fields: Vec<&str> = entries[1]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["field"].as_str().expect("name"))
        .collect();
    assert_eq!(fields, ["amount", "probability"]);
    assert_eq!(entries[3]["action"], "created");

    n.ok(&["delete", "Acme"]);
    assert!(
        n.json(&["list", "company"])
            .as_array()
            .expect("a")
            .is_empty()
    );
    assert_eq!(
        n.json(&["list", "company", "--deleted"])[0]["deleted"],
        true
    );
    let err = n.fails(&["deal", "add", "Another", "--company", "Acme"]);
    assert!(
        err.contains("deleted") && err.contains("rapport restore"),
        "{err}"
    );
    n.ok(&["restore", "Acme"]);
    assert_eq!(n.json(&["list", "company"]).as_array().expect("a").len(), 1);
    let history = n.json(&["timeline", "Acme"]);
    assert_eq!(history[0]["action"], "restored");
    assert_eq!(history[1]["action"], "deleted");
}

#[test]
fn pipeline_totals_per_stage_and_currency() {
    let n = Node::new();
    n.ok(&["company", "add", "Acme"]);
    for (title, amount, cur, stage) in [
        ("A", "1000", "EUR", "proposal"),
        ("B", "500", "EUR", "proposal"),
        ("C", "200", "USD", "proposal"),
        ("D", "300", "EUR", "won"),
    ] {
        n.ok(&[
            "deal",
            "add",
            title,
            "--company",
            "Acme",
            "--amount",
            amount,
            "--currency",
            cur,
            "--stage",
            stage,
        ]);
    }
    n.ok(&["deal", "add", "E", "--company", "Acme", "--stage", "lost"]);
    let p = n.json(&["pipeline"]);
    let stage = |name: &str| {
        p.as_array()
            .expect("stages")
            .iter()
            .find(|s| s["stage"] == name)
            .cloned()
            .expect("stage present")
    };
    assert_eq!(stage("proposal")["count"], 3);
    assert_eq!(stage("proposal")["currencies"]["EUR"]["total"], "1500.00");
    assert_eq!(stage("proposal")["currencies"]["EUR"]["weighted"], "750.00");
    assert_eq!(stage("proposal")["currencies"]["USD"]["total"], "200.00");
    assert_eq!(stage("won")["currencies"]["EUR"]["weighted"], "300.00");
    assert_eq!(stage("lost")["count"], 1);
    assert!(n.ok(&["pipeline"]).contains("1500.00"));
}

/// Reports and rates from the command line: exact per-currency sums, a
/// conversion that says its rates, one section as CSV a spreadsheet opens,
/// and filters refused with what to type.
#[test]
fn products_lines_and_the_deal_amount_from_the_command_line() {
    let n = Node::new();
    n.ok(&["company", "add", "Acme"]);
    n.ok(&["company", "add", "Beta"]);
    n.ok(&[
        "product",
        "add",
        "Seat",
        "--sku",
        "S-1",
        "--price",
        "19.99",
        "--currency",
        "EUR",
    ]);
    n.ok(&[
        "product",
        "add",
        "Setup",
        "--price",
        "500",
        "--currency",
        "EUR",
    ]);
    for (deal, company) in [("Rollout", "Acme"), ("Beta rollout", "Beta")] {
        n.ok(&["deal", "add", deal, "--company", company, "--stage", "won"]);
        n.ok(&[
            "line-item",
            "add",
            deal,
            "--product",
            "Seat",
            "--quantity",
            "3",
            "--discount",
            "15",
        ]);
        n.ok(&["line-item", "add", deal, "--product", "Setup"]);
    }
    let deal = n.json(&["show", "Rollout"]);
    assert_eq!(deal["amount"], "550.97", "{deal}");
    assert_eq!(deal["currency"], "EUR", "{deal}");
    let lines = n.json(&["list", "line_item", "--where", "deal=Rollout"]);
    assert_eq!(lines.as_array().expect("lines").len(), 2, "{lines}");

    // Set by hand, then back to the lines' total.
    n.ok(&["edit", "Rollout", "--set", "amount=500"]);
    let deal = n.json(&["show", "Rollout"]);
    assert_eq!(deal["manual_amount"], true, "{deal}");
    n.ok(&["edit", "Rollout", "--set", "manual_amount=no"]);
    assert_eq!(n.json(&["show", "Rollout"])["amount"], "550.97");

    // An import that updates the amount sets it by hand too.
    let csv = n.dir.parent().expect("dir").join("deals.csv");
    std::fs::write(&csv, "title,amount,currency\nRollout,600,EUR\n").expect("write");
    let imported = n.json(&[
        "import",
        csv.to_str().expect("path"),
        "--kind",
        "deal",
        "--match",
        "title",
        "--mode",
        "update",
    ]);
    assert_eq!(imported["counts"]["update"], 1, "{imported}");
    let deal = n.json(&["show", "Rollout"]);
    assert_eq!(deal["amount"], "600.00", "{deal}");
    assert_eq!(deal["manual_amount"], true, "{deal}");

    let err = n.fails(&[
        "line-item",
        "add",
        "Rollout",
        "--quantity",
        "0",
        "--price",
        "1",
    ]);
    assert!(err.contains("quantity"), "{err}");

    // Both customers bought Seat and Setup: the pair's lift is 1.
    let report = n.json(&["report", "cross-sell"]);
    assert_eq!(
        report["sections"][0]["rows"][0],
        serde_json::json!([
            "Seat → Setup",
            "Seat",
            "Setup",
            "2",
            "100.0",
            "100.0",
            "1.00"
        ]),
        "{report}"
    );
    let text = n.ok(&["report", "cross-sell", "--customer", "nobody"]);
    assert!(text.contains("no customer `nobody`"), "{text}");
}

#[test]
fn a_persons_data_exports_into_a_directory() {
    let n = Node::new();
    n.demo();
    let dir = n.dir.parent().expect("dir").join("ann-export");
    let text = n.ok(&[
        "privacy",
        "export",
        "Ann Baker",
        "--out",
        dir.to_str().expect("path"),
    ]);
    assert!(text.starts_with("Wrote 6 files to"), "{text}");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
    assert!(read("person.json").contains("ann@acme.example"));
    let related = read("related.json");
    for title in [
        "Acme plant rollout",
        "Acme support renewal",
        "Spring partner webinar",
    ] {
        assert!(related.contains(title), "{title}: {related}");
    }
    assert!(read("company.json").contains("Acme Corporation"));
    assert!(read("history.json").contains("created"));
    assert!(read("person.vcf").contains("FN:Ann Baker"));
    assert!(read("README.md").contains("What Rapport holds about Ann Baker"));
    // Never over another export, nor of what is no person.
    let err = n.fails(&[
        "privacy",
        "export",
        "Nora Lind",
        "--out",
        dir.to_str().expect("path"),
    ]);
    assert!(err.contains("is not empty"), "{err}");
    let other = n.dir.parent().expect("dir").join("acme");
    let err = n.fails(&[
        "privacy",
        "export",
        "Acme Corporation",
        "--out",
        other.to_str().expect("path"),
    ]);
    assert!(err.contains("an export is of a person"), "{err}");
}

#[test]
fn reports_and_rates_from_the_command_line() {
    let n = Node::new();
    n.ok(&["company", "add", "Acme"]);
    n.ok(&["company", "add", "Beta"]);
    for (title, company, amount, cur) in
        [("A", "Acme", "1000.10", "EUR"), ("B", "Beta", "250", "USD")]
    {
        n.ok(&[
            "deal",
            "add",
            title,
            "--company",
            company,
            "--amount",
            amount,
            "--currency",
            cur,
            "--stage",
            "won",
            "--owner",
            "ann",
        ]);
    }
    let abc = n.json(&["report", "abc"]);
    let titles: Vec<&str> = abc["sections"]
        .as_array()
        .expect("sections")
        .iter()
        .map(|s| s["title"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        titles,
        [
            "Classes, EUR",
            "Customers by won revenue, EUR",
            "Classes, USD",
            "Customers by won revenue, USD"
        ]
    );
    assert_eq!(abc["sections"][1]["rows"][0][2], "1000.10");

    n.ok(&["rates", "set", "USD=0.9", "--base", "EUR"]);
    let text = n.ok(&["report", "abc", "--convert"]);
    assert!(text.contains("converted to EUR"), "{text}");
    assert!(text.contains("1 USD = 0.9 EUR"), "{text}");
    let converted = n.json(&["report", "abc", "--convert"]);
    assert_eq!(
        converted["sections"][1]["rows"][1][2], "225.00",
        "{converted}"
    );

    let csv = n.ok(&["report", "abc", "--csv", "--section", "2"]);
    assert!(
        csv.starts_with("\u{FEFF}rank,customer,won revenue (EUR),share %,cumulative %,class\r\n1,Acme,1000.10,100.0,100.0,A\r\n"),
        "{csv:?}"
    );
    let win = n.ok(&["report", "win-rate", "--owner", "ann"]);
    assert!(win.contains("1000.10 EUR; 250.00 USD"), "{win}");

    assert!(
        n.fails(&["report", "pareto"])
            .contains("use one of win-rate")
    );
    assert!(
        n.fails(&["report", "abc", "--from", "March"])
            .contains("2026-03-31")
    );
    assert!(
        n.fails(&["report", "abc", "--csv", "--section", "9"])
            .contains("counted from 1")
    );
    assert!(
        n.fails(&["rates", "set", "USD=zero", "--base", "EUR"])
            .contains("USD=zero")
    );
    n.ok(&["rates", "clear"]);
    assert!(n.ok(&["rates", "show"]).contains("No exchange rates set"));
}

/// `rapport agenda`: a repeating meeting read in its own zone, a call
/// that overlaps it, an overdue task, and bad input refused.
#[test]
fn the_agenda_of_a_week() {
    let n = Node::new();
    n.ok(&["init", "--name", "Ann"]);
    n.ok(&[
        "activity",
        "add",
        "meeting",
        "--subject",
        "Stand-up",
        "--when",
        "2026-03-16 09:00",
        "--ends",
        "2026-03-16 09:30",
        "--zone",
        "Europe/Berlin",
        "--repeat",
        "weekdays",
        "--owner",
        "Ann",
    ]);
    n.ok(&[
        "activity",
        "add",
        "call",
        "--subject",
        "Acme call",
        "--when",
        "2026-03-24T08:15:00Z",
        "--owner",
        "Ann",
    ]);
    n.ok(&[
        "activity",
        "add",
        "meeting",
        "--subject",
        "Ben's",
        "--when",
        "2026-03-24T08:00:00Z",
        "--owner",
        "Ben",
    ]);
    let week = n.ok(&[
        "agenda",
        "--week",
        "--from",
        "2026-03-25",
        "--zone",
        "Europe/Berlin",
    ]);
    assert!(
        week.starts_with("Agenda from 2026-03-23 for 7 days (Europe/Berlin), ann's"),
        "{week}"
    );
    assert!(
        week.contains("Tuesday 2026-03-24\n  09:00–09:30  meeting  Stand-up [repeats] [overlaps]"),
        "{week}"
    );
    assert!(
        week.contains("09:15–09:45  call     Acme call [overlaps]"),
        "{week}"
    );
    assert!(!week.contains("Ben's"), "{week}");
    assert!(!week.contains("Saturday"), "{week}");
    // After the change to summer time (29 March) 09:00 in Berlin is 07:00 UTC.
    let utc = n.json(&["agenda", "--from", "2026-03-30", "--zone", "UTC", "--all"]);
    assert_eq!(utc["entries"][0]["start"], "07:00", "{utc}");
    assert!(n.fails(&["agenda", "--days", "0"]).contains("from 1 to 62"));
    assert!(
        n.fails(&["agenda", "--zone", "Mars/Base"])
            .contains("not a time zone")
    );
    assert!(
        n.fails(&[
            "activity",
            "add",
            "meeting",
            "--when",
            "2026-03-16 09:00",
            "--repeat",
            "often"
        ])
        .contains("FREQ=WEEKLY")
    );
    // Tuesday's stand-up alone moves to 11:00; Wednesday's stays at 09:00.
    let moved = n.ok(&[
        "calendar",
        "move",
        "Stand-up",
        "--from",
        "2026-03-24",
        "--to",
        "2026-03-24",
        "--at",
        "11:00",
        "--only",
    ]);
    assert!(moved.starts_with("Moved"), "{moved}");
    let week = n.ok(&[
        "agenda",
        "--week",
        "--from",
        "2026-03-23",
        "--zone",
        "Europe/Berlin",
    ]);
    assert!(
        week.contains("11:00–11:30  meeting  Stand-up\n"),
        "a meeting of its own: {week}"
    );
    assert!(
        week.contains("Wednesday 2026-03-25\n  09:00–09:30  meeting  Stand-up [repeats]"),
        "{week}"
    );
    assert!(
        n.fails(&["calendar", "move", "Acme call", "--to", "someday"])
            .contains("not a day")
    );
}

#[test]
fn export_as_json_and_as_automerge_documents() {
    let n = Node::new();
    n.demo();
    let all = n.json(&["export"]);
    assert_eq!(all.as_array().expect("array").len(), 37);
    let deals = n.json(&["export", "deal"]);
    assert_eq!(deals.as_array().expect("array").len(), 6);

    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("am");
    n.ok(&[
        "export",
        "company",
        "--format",
        "automerge",
        "--out",
        dir.to_str().expect("utf8"),
    ]);
    let files: Vec<_> = std::fs::read_dir(dir.join("company"))
        .expect("dir")
        .collect();
    assert_eq!(files.len(), 5);
    // Any Automerge implementation can read them; here, the Rust one.
    use rapport_model::automerge::{AutoCommit, ROOT, ReadDoc};
    let mut names = Vec::new();
    for f in files {
        let bytes = std::fs::read(f.expect("entry").path()).expect("read");
        let doc = AutoCommit::load(&bytes).expect("a valid Automerge document");
        assert_eq!(
            doc.get(ROOT, "kind")
                .expect("get")
                .expect("kind")
                .0
                .to_string(),
            "\"company\""
        );
        let (_, fields) = doc.get(ROOT, "fields").expect("get").expect("fields");
        let (name, _) = doc.get(&fields, "name").expect("get").expect("name");
        names.push(name.to_string());
    }
    assert!(
        names.iter().any(|n| n.contains("Acme Corporation")),
        "{names:?}"
    );

    let json_dir = out.path().join("json");
    n.ok(&["export", "--out", json_dir.to_str().expect("utf8")]);
    let people: Value =
        serde_json::from_slice(&std::fs::read(json_dir.join("person.json")).expect("file"))
            .expect("json");
    assert_eq!(people.as_array().expect("array").len(), 6);
    let err = n.fails(&["export", "--format", "automerge"]);
    assert!(err.contains("--out"), "{err}");
}

#[test]
fn invalid_input_is_refused_with_a_clear_message_and_changes_nothing() {
    let n = Node::new();
    n.ok(&["company", "add", "Acme"]);
    n.ok(&["person", "add", "Ann", "--company", "Acme"]);
    n.ok(&["person", "add", "Acme"]);
    let before = n.snapshot();
    let cases: &[(&[&str], &str)] = &[
        (
            &["person", "add", "Bob", "--email", "bob@"],
            "name@example.com",
        ),
        (
            &["deal", "add", "X", "--company", "Acme Corp Ltd"],
            "no record matches",
        ),
        (
            &["deal", "add", "X", "--company", "Ann"],
            "must refer to a company",
        ),
        (
            &[
                "deal",
                "add",
                "X",
                "--company",
                "Acme",
                "--stage",
                "closed-won",
            ],
            "lead, qualified, proposal",
        ),
        (
            &[
                "deal",
                "add",
                "X",
                "--company",
                "Acme",
                "--amount",
                "-5",
                "--currency",
                "EUR",
            ],
            "negative",
        ),
        (
            &[
                "deal",
                "add",
                "X",
                "--company",
                "Acme",
                "--amount",
                "5",
                "--currency",
                "EUD",
            ],
            "ISO 4217",
        ),
        (
            &["deal", "add", "X", "--company", "Acme", "--amount", "5"],
            "needs a currency",
        ),
        (
            &[
                "deal",
                "add",
                "X",
                "--company",
                "Acme",
                "--close",
                "2026-02-30",
            ],
            "expected a date",
        ),
        (&["show", "acme"], "matches several records"),
        (&["show", "nobody"], "no record matches"),
        (
            &["edit", "Ann", "--set", "colour=red"],
            "has no field `colour`",
        ),
        (&["edit", "Ann", "--set", "nonsense"], "FIELD=VALUE"),
        (&["edit", "Ann", "--unset", "name"], "cannot be cleared"),
        (&["edit", "Ann"], "nothing to change"),
        (&["list", "widgets"], "unknown record kind"),
        (
            &[
                "campaign",
                "add",
                "C",
                "--start",
                "2026-05-02",
                "--end",
                "2026-05-01",
            ],
            "ends",
        ),
    ];
    for (args, expected) in cases {
        let err = n.fails(args);
        assert!(
            err.contains(expected),
            "rapport {args:?}: expected `{expected}` in: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // Malformed arguments are caught by the parser, with usage help.
    let out = n.run(&["deal", "add"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
    assert_eq!(n.snapshot(), before, "a refused command changed the store");
}

#[test]
fn a_directory_that_is_not_rapports_is_left_untouched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("thesis.tex"), "precious").expect("write");
    let out = Node::at(tmp.path())
        .args(["company", "add", "Acme"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a Rapport data directory") && err.contains("--data-dir"),
        "{err}"
    );
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("dir")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(names, ["thesis.tex"]);

    // Reading commands do not create a directory that is not there.
    let missing = tmp.path().join("typo");
    let out = Node::at(&missing)
        .args(["list", "company"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rapport init"));
    assert!(!missing.exists());
}

#[test]
fn damaged_data_directories_give_a_clear_error() {
    let n = Node::new();
    n.ok(&["company", "add", "Acme"]);
    let profile = n.dir.join("rapport.json");
    let saved = std::fs::read(&profile).expect("read");
    std::fs::write(&profile, "{ not json").expect("write");
    let err = n.fails(&["list", "company"]);
    assert!(
        err.contains("rapport.json is damaged") && err.contains("backup"),
        "{err}"
    );
    std::fs::write(&profile, &saved).expect("restore");

    let key = n.dir.join("device.key");
    let saved_key = std::fs::read(&key).expect("read");
    std::fs::write(&key, [0u8; 32]).expect("write");
    let err = n.fails(&["list", "company"]);
    assert!(err.contains("device.key is damaged"), "{err}");
    std::fs::write(&key, &saved_key).expect("restore");
    assert_eq!(n.json(&["list", "company"]).as_array().expect("a").len(), 1);

    // A store whose files are garbage is moved aside and rebuilt from
    // the journal, and the command goes on.
    let garble = |dir: &std::path::Path| {
        for entry in std::fs::read_dir(dir).expect("dir") {
            let path = entry.expect("e").path();
            if path.is_file() {
                std::fs::write(&path, b"garbage garbage garbage").expect("write");
            }
        }
    };
    garble(&n.dir.join("store"));
    let out = n.run(&["--json", "list", "company"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("rebuilt the store from the journal"), "{err}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed[0]["name"], "Acme");
    assert!(
        std::fs::read_dir(&n.dir).expect("dir").any(|e| e
            .expect("e")
            .file_name()
            .to_string_lossy()
            .starts_with("store.replaced-")),
        "the damaged store was not kept aside"
    );

    // With the journal damaged too, it is reported, not panicked on, and
    // nothing takes its place.
    garble(&n.dir.join("store"));
    garble(&n.dir.join("journal"));
    let err = n.fails(&["list", "company"]);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.starts_with("error:") && err.contains("journal") && err.contains("rapport restore"),
        "{err}"
    );
    // Writing is refused too: no empty store silently takes its place.
    let err = n.fails(&["company", "add", "Globex"]);
    assert!(err.contains("damaged"), "{err}");
}

#[cfg(unix)]
#[test]
fn the_device_key_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let n = Node::new();
    let who = n.json(&["init", "--name", "Dana"]);
    assert_eq!(who["device"].as_str().expect("device").len(), 64);
    let mode = std::fs::metadata(n.dir.join("device.key"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key mode {mode:o}");
    let dir_mode = std::fs::metadata(&n.dir)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o077, 0, "dir mode {dir_mode:o}");
}

/// The `rapport ...` lines of a README section's code blocks (line
/// continuations joined), except installing and starting nodes.
fn readme_commands(section: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let text = readme
        .split(section)
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("no section {section}"));
    let mut script = String::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block && !line.trim_start().starts_with("cargo install") {
            script.push_str(line);
            script.push('\n');
        }
    }
    script
        .replace("\\\n", " ")
        .lines()
        .filter(|l| l.trim_start().starts_with("rapport "))
        .map(str::to_string)
        .collect()
}

/// Runs one README line in bash; lines whose comment says "refused" must
/// fail (with a message), the others succeed.
fn run_readme_line(cmd: &str, data_dir: &std::path::Path, cwd: &std::path::Path) {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("rapport() {{ \"$RAPPORT_BIN\" \"$@\"; }}\n{cmd}"))
        .env("RAPPORT_BIN", common::rapport_bin())
        .env("RAPPORT_DATA_DIR", data_dir)
        .current_dir(cwd)
        .output()
        .expect("bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if cmd.contains("# refused") {
        assert!(
            !out.status.success() && !stderr.is_empty(),
            "README command should be refused: {cmd}"
        );
    } else {
        assert!(
            out.status.success(),
            "README command failed: {cmd}\n{stderr}"
        );
    }
}

/// The README's tour, run line by line in bash against a fresh data
/// directory: if the README drifts from the CLI, this fails.
#[test]
fn the_readme_tour_runs_as_written() {
    let n = Node::new();
    // The tour's first step, `rapport up --demo`, as a background node.
    let _node = n.start(&["--demo"]);
    let work = tempfile::tempdir().expect("tempdir");
    let mut ran = 0;
    for cmd in readme_commands("## A five-minute tour") {
        if cmd.trim_start().starts_with("rapport up") {
            continue;
        }
        run_readme_line(&cmd, &n.dir, work.path());
        ran += 1;
    }
    assert!(ran >= 20, "only {ran} commands found in the tour");
    let deal = n.json(&["show", "Wayne fleet upgrade"]);
    assert_eq!(deal["stage"], "proposal");
    assert_eq!(deal["probability"], 60);

    // Then the partner section, with the partner's node in a temporary
    // directory in place of /tmp/partner.
    let partner = Node::new();
    let dir = partner.dir.to_str().expect("utf-8 path").to_string();
    let mut partner_node = None;
    let mut ran = 0;
    for cmd in readme_commands("## Share a space with a partner organisation") {
        let cmd = cmd.replace("/tmp/partner", &dir);
        let code = cmd.split('#').next().unwrap_or_default().trim_end();
        if code.ends_with(" up") {
            partner_node = Some(partner.start(&[]));
            continue;
        }
        run_readme_line(&cmd, &n.dir, work.path());
        ran += 1;
        if code.ends_with("industry=Retail") {
            // "within a second": wait for it before the removal.
            assert!(common::eventually(
                std::time::Duration::from_secs(20),
                || { partner.json(&["show", "Joint Co"])["industry"] == "Retail" }
            ));
        }
    }
    assert!(
        partner_node.is_some() && ran >= 10,
        "the partner section changed shape ({ran} commands)"
    );
    assert!(
        !partner.run(&["show", "After Co"]).status.success(),
        "a removed partner received a new record"
    );
    let removed = n.json(&["space", "members", "Acme ↔ Northwind"])["removed"].clone();
    assert_eq!(removed.as_object().map(|m| m.len()), Some(1), "{removed}");
}

/// One HTTP GET to the web UI: (status line and headers, body).
fn ui_get(url: &str, cookie: Option<&str>) -> (String, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the UI");
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let path = if path.is_empty() { "/" } else { path };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{cookie}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn rapport_open_gives_a_login_link_that_works_once() {
    let n = Node::new();
    let refused = n.fails(&["open", "--print"]);
    assert!(
        refused.contains("no node is running") && refused.contains("rapport up"),
        "{refused}"
    );
    let _node = n.start(&["--demo", "--ui-bind", "127.0.0.1:0"]);
    let link = n.json(&["open", "--print"])["login"]
        .as_str()
        .expect("a login link")
        .to_string();
    let base = link.split("/login").next().expect("base URL").to_string();

    let (head, _) = ui_get(&format!("{base}/k/company"), None);
    assert!(
        head.starts_with("HTTP/1.1 303") && head.contains("location: /login?next=/k/company"),
        "a page without a session sends to the login page: {head}"
    );
    let (head, _) = ui_get(&link, None);
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let (head, body) = ui_get(&format!("{base}/search?q=acme"), Some(&cookie));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("Acme Corporation"), "{body}");
    let (again, body) = ui_get(&link, None);
    assert!(again.starts_with("HTTP/1.1 401"), "{again}");
    assert!(body.contains("already used or has expired"), "{body}");
}

#[test]
fn a_node_started_with_no_ui_says_so_to_rapport_open() {
    let n = Node::new();
    let _node = n.start(&["--no-ui"]);
    let refused = n.fails(&["open", "--print"]);
    assert!(refused.contains("serves no web UI"), "{refused}");
}

/// `rapport backup` through the running node, restored elsewhere while it
/// runs: the copy holds what was acknowledged before it, works as the same
/// device, and `repair` is refused while the node holds the store.
#[test]
fn backup_while_the_node_runs_restores_elsewhere_and_repair_waits_for_a_stop() {
    let n = Node::new();
    n.ok(&["init", "--name", "Dana"]);
    let mut node = n.start(&[]);
    let acme = id_of(&n.json(&["company", "add", "Acme"]));
    n.ok(&["edit", &acme, "--set", "industry=Steel"]);
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("node.backup");
    let out = n.ok(&["backup", "--out", file.to_str().expect("utf-8")]);
    assert!(out.contains("secret key"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("backup")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the backup holds the device key");
    }
    n.ok(&["company", "add", "After the backup"]);

    let err = n.fails(&["repair"]);
    assert!(err.contains("stop it"), "{err}");

    let restored = work.path().join("restored");
    let out = Node::at(&restored)
        .args(["restore", file.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = Node::at(&restored)
        .args(["--json", "show", &acme])
        .output()
        .expect("run");
    let shown: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(shown["industry"], "Steel");
    let who = |dir: &std::path::Path| -> Value {
        let out = Node::at(dir)
            .args(["--json", "whoami"])
            .output()
            .expect("run");
        serde_json::from_slice(&out.stdout).expect("json")
    };
    assert_eq!(who(&restored)["device"], who(&n.dir)["device"]);
    let after = Node::at(&restored)
        .args(["show", "After the backup"])
        .output()
        .expect("run");
    assert!(!after.status.success(), "the backup holds a later write");
    // A restore onto the running node's directory is refused.
    let err = n.fails(&["restore", file.to_str().expect("utf-8")]);
    assert!(err.contains("restore makes a new one"), "{err}");
    node.stop();
    // Stopped, `repair` rebuilds and keeps every record.
    let out = n.ok(&["repair"]);
    assert!(out.contains("records rebuilt   2"), "{out}");
    assert_eq!(
        n.json(&["list", "company"]).as_array().map(Vec::len),
        Some(2)
    );
}
