//! One function per command: call the node, print the result.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rapport_model::{Kind, RecordView};
use rapport_node::repo::Input;
use rapport_node::timeline::Entry;
use rapport_node::{OpenMode, Repo, parse_assignment};
use serde_json::json;

use crate::output::{Display, clip, local_time, short_id_len, table};
use crate::{
    ActivityCmd, CampaignCmd, Cli, Command, CompanyCmd, DealCmd, ExportFormat, Extra, PersonCmd,
    TaskCmd, TicketCmd,
};

pub fn run(cli: Cli) -> Result<()> {
    let dir = data_dir(cli.data_dir)?;
    let json = cli.json;
    let open = |mode| Repo::open(&dir, mode);
    match cli.command {
        Command::Init { name, org } => {
            let existed = dir.join(rapport_node::datadir::PROFILE_FILE).exists();
            let mut repo = open(OpenMode::Create)?;
            repo.set_identity(name, org)?;
            if !json {
                println!(
                    "{} {}",
                    if existed {
                        "Rapport data directory already set up at"
                    } else {
                        "Created Rapport data directory at"
                    },
                    dir.display()
                );
            }
            whoami(&repo, json)
        }
        Command::Whoami => whoami(&open(OpenMode::Existing)?, json),
        Command::Up { demo } => up(&open(OpenMode::Create)?, demo, json),
        Command::Company(CompanyCmd::Add {
            name,
            domain,
            industry,
            address,
            phone,
            website,
            owner,
            tags,
            extra,
        }) => {
            let mut i = inputs(&[
                ("name", Some(name)),
                ("domain", domain),
                ("industry", industry),
                ("address", address),
                ("phone", phone),
                ("website", website),
                ("owner", owner),
            ]);
            push_list(&mut i, "tags", &tags);
            add(&open(OpenMode::Create)?, Kind::Company, i, extra, json)
        }
        Command::Person(PersonCmd::Add {
            name,
            emails,
            phones,
            title,
            company,
            owner,
            tags,
            extra,
        }) => {
            let mut i = inputs(&[
                ("name", Some(name)),
                ("title", title),
                ("company", company),
                ("owner", owner),
            ]);
            push_list(&mut i, "emails", &emails);
            push_list(&mut i, "phones", &phones);
            push_list(&mut i, "tags", &tags);
            add(&open(OpenMode::Create)?, Kind::Person, i, extra, json)
        }
        Command::Deal(DealCmd::Add {
            title,
            company,
            contacts,
            amount,
            currency,
            stage,
            probability,
            close,
            owner,
            extra,
        }) => {
            let mut i = inputs(&[
                ("title", Some(title)),
                ("company", Some(company)),
                ("amount", amount),
                ("currency", currency),
                ("stage", stage),
                ("probability", probability),
                ("close", close),
                ("owner", owner),
            ]);
            push_list(&mut i, "contacts", &contacts);
            add(&open(OpenMode::Create)?, Kind::Deal, i, extra, json)
        }
        Command::Activity(ActivityCmd::Add {
            kind,
            about,
            subject,
            text,
            when,
            due,
            owner,
            extra,
        }) => {
            let subject = subject.or_else(|| {
                text.as_deref()
                    .and_then(|t| t.lines().next())
                    .map(|l| clip(l.trim(), 80))
            });
            let mut i = inputs(&[
                ("type", Some(kind)),
                ("subject", subject),
                ("body", text),
                ("when", when),
                ("due", due),
                ("owner", owner),
            ]);
            push_list(&mut i, "about", &about);
            add(&open(OpenMode::Create)?, Kind::Activity, i, extra, json)
        }
        Command::Task(TaskCmd::Done { reference }) => {
            let repo = open(OpenMode::Existing)?;
            let v = repo.complete_task(&reference)?;
            done(&v, "Done:", json)
        }
        Command::Ticket(TicketCmd::Add {
            title,
            about,
            priority,
            status,
            description,
            owner,
            extra,
        }) => {
            let repo = open(OpenMode::Create)?;
            let mut i = inputs(&[
                ("title", Some(title)),
                ("priority", priority),
                ("status", status),
                ("description", description),
                ("owner", owner),
            ]);
            if let Some(about) = about {
                i.extend(repo.ticket_about(&about)?);
            }
            add(&repo, Kind::Ticket, i, extra, json)
        }
        Command::Campaign(CampaignCmd::Add {
            name,
            channel,
            start,
            end,
            budget,
            currency,
            members,
            owner,
            extra,
        }) => {
            let mut i = inputs(&[
                ("name", Some(name)),
                ("channel", channel),
                ("start", start),
                ("end", end),
                ("budget", budget),
                ("currency", currency),
                ("owner", owner),
            ]);
            push_list(&mut i, "members", &members);
            add(&open(OpenMode::Create)?, Kind::Campaign, i, extra, json)
        }
        Command::List {
            kind,
            filters,
            deleted,
        } => {
            let repo = open(OpenMode::Existing)?;
            let kind: Kind = kind.parse()?;
            let filters = filters
                .iter()
                .map(|f| parse_assignment(f))
                .collect::<Result<Vec<_>, _>>()?;
            let views = repo.list(kind, &filters, deleted)?;
            list(&repo, kind, &views, json)
        }
        Command::Show { reference } => {
            let repo = open(OpenMode::Existing)?;
            let v = repo.resolve(&reference)?;
            show(&repo, &v, json)
        }
        Command::Edit {
            reference,
            sets,
            unsets,
        } => {
            if sets.is_empty() && unsets.is_empty() {
                bail!("nothing to change: give --set FIELD=VALUE or --unset FIELD");
            }
            let repo = open(OpenMode::Existing)?;
            let sets = sets
                .iter()
                .map(|s| parse_assignment(s))
                .collect::<Result<Vec<_>, _>>()?;
            let v = repo.edit(&reference, &sets, &unsets)?;
            done(&v, "Updated", json)
        }
        Command::Delete { reference } => {
            let repo = open(OpenMode::Existing)?;
            let v = repo.delete(&reference)?;
            if !json {
                println!(
                    "Deleted {} {} (undo: rapport restore {})",
                    v.kind,
                    v.title(),
                    v.id
                );
                return Ok(());
            }
            print_json(&v.to_json())
        }
        Command::Restore { reference } => {
            let repo = open(OpenMode::Existing)?;
            let v = repo.restore(&reference)?;
            done(&v, "Restored", json)
        }
        Command::Timeline { reference } => {
            let repo = open(OpenMode::Existing)?;
            let v = repo.resolve(&reference)?;
            timeline(&repo, &v, json)
        }
        Command::Pipeline => pipeline(&open(OpenMode::Existing)?, json),
        Command::Export { kind, format, out } => {
            let kind = kind.map(|k| k.parse::<Kind>()).transpose()?;
            export(
                &open(OpenMode::Existing)?,
                kind,
                format,
                out.as_deref(),
                json,
            )
        }
        Command::Fields { kind } => fields(kind.parse()?, json),
        Command::Bench { records, dir } => crate::bench::run(records, dir.as_deref(), json),
    }
}

fn data_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(d) => Ok(d),
        None => rapport_node::datadir::default_data_dir().context(
            "this platform has no default data directory; give one with --data-dir or RAPPORT_DATA_DIR",
        ),
    }
}

fn inputs(pairs: &[(&str, Option<String>)]) -> Vec<Input> {
    pairs
        .iter()
        .filter_map(|(f, v)| v.clone().map(|v| (f.to_string(), v)))
        .collect()
}

fn push_list(inputs: &mut Vec<Input>, field: &str, items: &[String]) {
    if !items.is_empty() {
        inputs.push((field.to_string(), items.join(",")));
    }
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn add(repo: &Repo, kind: Kind, mut inputs: Vec<Input>, extra: Extra, json: bool) -> Result<()> {
    for s in &extra.sets {
        inputs.push(parse_assignment(s)?);
    }
    let space = match &extra.space {
        Some(s) => repo.resolve_space(s)?,
        None => rapport_model::SpaceId::Private,
    };
    let v = repo.create(kind, space, &inputs)?;
    done(&v, "Created", json)
}

/// Prints the outcome of a write: the record as JSON, or one line.
fn done(v: &RecordView, verb: &str, json: bool) -> Result<()> {
    if json {
        return print_json(&v.to_json());
    }
    println!("{verb} {} {}  ({})", v.kind, v.title(), v.id);
    Ok(())
}

fn whoami(repo: &Repo, json: bool) -> Result<()> {
    let p = repo.profile();
    if json {
        return print_json(&json!({
            "name": p.name, "org": p.org, "device": p.device,
            "data_dir": repo.dir(), "records": repo.store().record_count(),
        }));
    }
    println!(
        "name        {}",
        p.name
            .as_deref()
            .unwrap_or("(not set: rapport init --name NAME)")
    );
    println!(
        "org         {}",
        p.org
            .as_deref()
            .unwrap_or("(not set: rapport init --org ORG)")
    );
    println!("device      {}", p.device);
    println!("data dir    {}", repo.dir().display());
    println!("records     {}", repo.store().record_count());
    Ok(())
}

fn up(repo: &Repo, demo: bool, json: bool) -> Result<()> {
    let added = if demo {
        rapport_node::demo::seed(repo)?
    } else {
        0
    };
    if json {
        return print_json(&json!({
            "data_dir": repo.dir(), "device": repo.profile().device,
            "records": repo.store().record_count(), "demo_records_added": added,
        }));
    }
    println!("Rapport is ready: data in {}", repo.dir().display());
    println!("device {}", repo.profile().device);
    if added > 0 {
        println!("Loaded {added} demo records.");
    }
    println!("{} records in the store.\n", repo.store().record_count());
    println!("Try:");
    println!("  rapport list company");
    println!("  rapport show \"Acme Corporation\"");
    println!("  rapport pipeline");
    println!("  rapport timeline \"Acme plant rollout\"");
    println!("  rapport deal add \"New deal\" --company Globex --amount 5000 --currency USD");
    println!("\nThis release works on the local store: no node process needs to keep running.");
    Ok(())
}

fn list(repo: &Repo, kind: Kind, views: &[RecordView], json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::Value::Array(
            views.iter().map(RecordView::to_json).collect(),
        ));
    }
    if views.is_empty() {
        println!("No {kind} records. Add one with `rapport {kind} add ...`.");
        return Ok(());
    }
    let mut d = Display::new(repo);
    let cols = kind.columns();
    let mut header = vec!["id"];
    header.extend(cols);
    let ids: Vec<_> = views.iter().map(|v| v.id).collect();
    let id_len = short_id_len(&ids);
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let mut row = vec![v.id.to_string()[..id_len].to_string()];
            row.extend(cols.iter().map(|c| clip(&d.field(v, c), 40)));
            row
        })
        .collect();
    println!("{}", table(&header, &rows));
    println!(
        "{} {}",
        views.len(),
        if views.len() == 1 {
            "record"
        } else {
            "records"
        }
    );
    Ok(())
}

fn show(repo: &Repo, v: &RecordView, json: bool) -> Result<()> {
    if json {
        return print_json(&v.to_json());
    }
    let mut d = Display::new(repo);
    println!("{}", d.card(v));
    let related = repo.related(v.id)?;
    let live: Vec<_> = related.iter().filter(|(_, r)| !r.deleted).collect();
    if !live.is_empty() {
        println!("\nrelated");
        for (field, r) in live {
            println!(
                "  {:<9} {:<40} {:<10} {}",
                r.kind.as_str(),
                clip(&r.title(), 40),
                format!("({field})"),
                r.id
            );
        }
    }
    Ok(())
}

fn timeline(repo: &Repo, v: &RecordView, json: bool) -> Result<()> {
    let entries = repo.timeline(v)?;
    if json {
        return print_json(&serde_json::to_value(&entries)?);
    }
    let mut d = Display::new(repo);
    println!("Timeline of {} {}\n", v.kind, v.title());
    for e in &entries {
        match e {
            Entry::Change {
                time,
                author,
                action,
                fields,
                verified,
                ..
            } => {
                let mark = if *verified {
                    ""
                } else {
                    "  [SIGNATURE DOES NOT VERIFY]"
                };
                println!("{}  {action} by {author}{mark}", local_time(*time));
                for f in fields {
                    let show = |val: &Option<rapport_model::FieldValue>, d: &mut Display| {
                        val.as_ref().map_or("—".to_string(), |x| {
                            clip(&d.value(v.kind, &f.field, x), 50)
                        })
                    };
                    let before = show(&f.before, &mut d);
                    let after = show(&f.after, &mut d);
                    if action == "created" {
                        println!("    {}: {after}", f.field);
                    } else {
                        println!("    {}: {before} → {after}", f.field);
                    }
                }
            }
            Entry::Activity {
                time,
                activity,
                subject,
                done,
                ..
            } => {
                let status = match done {
                    Some(true) => " [done]",
                    Some(false) => " [open]",
                    None => "",
                };
                println!("{}  {activity}: {subject}{status}", local_time(*time));
            }
        }
    }
    if entries.is_empty() {
        println!("(no history)");
    }
    Ok(())
}

fn pipeline(repo: &Repo, json: bool) -> Result<()> {
    let stages = repo.pipeline()?;
    if json {
        return print_json(&serde_json::to_value(&stages)?);
    }
    let mut rows = Vec::new();
    for s in &stages {
        if s.currencies.is_empty() {
            rows.push(vec![
                s.stage.to_string(),
                s.count.to_string(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for (i, (cur, m)) in s.currencies.iter().enumerate() {
            let (stage, count) = if i == 0 {
                (s.stage.to_string(), s.count.to_string())
            } else {
                (String::new(), String::new())
            };
            rows.push(vec![
                stage,
                count,
                cur.clone(),
                m.total.clone(),
                m.weighted.clone(),
            ]);
        }
    }
    println!(
        "{}",
        table(&["stage", "deals", "currency", "total", "weighted"], &rows)
    );
    Ok(())
}

fn fields(kind: Kind, json: bool) -> Result<()> {
    if json {
        let list: Vec<_> = kind
            .fields()
            .iter()
            .map(|d| json!({"name": d.name, "type": format!("{:?}", d.ty), "required": d.required, "default": d.default, "help": d.help}))
            .collect();
        return print_json(&serde_json::Value::Array(list));
    }
    let rows: Vec<Vec<String>> = kind
        .fields()
        .iter()
        .map(|d| {
            let ty = match d.ty {
                rapport_model::FieldType::Choice(o) => o.join("|"),
                rapport_model::FieldType::Ref(k) | rapport_model::FieldType::Refs(k)
                    if !k.is_empty() =>
                {
                    format!(
                        "{}{}",
                        k.iter().map(|k| k.as_str()).collect::<Vec<_>>().join("|"),
                        if d.ty.is_list() { " (list)" } else { "" }
                    )
                }
                other => format!("{other:?}").to_lowercase(),
            };
            vec![
                d.name.to_string(),
                ty,
                if d.required {
                    "yes".into()
                } else {
                    String::new()
                },
                d.help.to_string(),
            ]
        })
        .collect();
    println!("{}", table(&["field", "type", "required", "help"], &rows));
    Ok(())
}

fn export(
    repo: &Repo,
    kind: Option<Kind>,
    format: ExportFormat,
    out: Option<&Path>,
    json: bool,
) -> Result<()> {
    let views: Vec<RecordView> = repo.all(kind).collect::<Result<_, _>>()?;
    match (format, out) {
        (ExportFormat::Json, None) => print_json(&serde_json::Value::Array(
            views.iter().map(RecordView::to_json).collect(),
        )),
        (ExportFormat::Automerge, None) => {
            bail!("--format automerge writes one file per record: give a directory with --out DIR")
        }
        (format, Some(out)) => {
            std::fs::create_dir_all(out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let bar = indicatif::ProgressBar::new(views.len() as u64);
            let mut written = 0usize;
            match format {
                ExportFormat::Json => {
                    for k in Kind::ALL {
                        let of_kind: Vec<_> = views
                            .iter()
                            .filter(|v| v.kind == k)
                            .map(RecordView::to_json)
                            .collect();
                        if of_kind.is_empty() {
                            continue;
                        }
                        let path = out.join(format!("{k}.json"));
                        std::fs::write(&path, serde_json::to_vec_pretty(&of_kind)?)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        written += 1;
                        bar.inc(of_kind.len() as u64);
                    }
                }
                ExportFormat::Automerge => {
                    for v in &views {
                        let dir = out.join(v.kind.as_str());
                        std::fs::create_dir_all(&dir)
                            .with_context(|| format!("cannot create {}", dir.display()))?;
                        let bytes = repo
                            .store()
                            .doc(v.id)?
                            .with_context(|| format!("record {} has no document", v.id))?;
                        let path = dir.join(format!("{}.automerge", v.id));
                        std::fs::write(&path, bytes)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        written += 1;
                        bar.inc(1);
                    }
                }
            }
            bar.finish_and_clear();
            if json {
                return print_json(&json!({"records": views.len(), "files": written, "out": out}));
            }
            println!(
                "Exported {} records into {} files in {}",
                views.len(),
                written,
                out.display()
            );
            Ok(())
        }
    }
}
