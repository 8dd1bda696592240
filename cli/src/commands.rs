//! One function per command: call the node, write the result.
//!
//! Commands write into a `String` rather than to stdout, so that the same
//! code serves a command run directly and one forwarded to a running node.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rapport_model::{Kind, RecordView};
use rapport_node::net::Node;
use rapport_node::repo::Input;
use rapport_node::timeline::Entry;
use rapport_node::{OpenMode, Repo, parse_assignment};
use serde_json::json;

use crate::output::{Display, clip, local_time, short_id_len, table};
use crate::{
    ActivityCmd, CampaignCmd, Cli, Command, CompanyCmd, DealCmd, ExportFormat, Extra, PersonCmd,
    SpaceCmd, TaskCmd, TicketCmd,
};

/// Where a command's data comes from.
pub enum Backend {
    /// No node runs: open the data directory for this one command.
    Direct(PathBuf),
    /// Inside the running node, for a command forwarded by the local API;
    /// relative paths are resolved against the client's `cwd`.
    Node { node: Node, cwd: PathBuf },
}

impl Backend {
    fn repo(&self, mode: OpenMode) -> Result<Arc<Repo>> {
        match self {
            Backend::Direct(dir) => Ok(Arc::new(Repo::open(dir, mode)?)),
            Backend::Node { node, .. } => Ok(node.repo().clone()),
        }
    }

    fn node(&self, what: &str) -> Result<&Node> {
        match self {
            Backend::Node { node, .. } => Ok(node),
            Backend::Direct(_) => bail!(
                "{what} needs the running node: start it with `rapport up` (in another terminal) and try again"
            ),
        }
    }

    /// A progress bar for long work: shown in a terminal, hidden inside
    /// the node (its output goes back to the client as text).
    pub(crate) fn progress_bar(&self) -> indicatif::ProgressBar {
        match self {
            Backend::Direct(_) => indicatif::ProgressBar::new(0),
            Backend::Node { .. } => indicatif::ProgressBar::hidden(),
        }
    }

    pub(crate) fn path(&self, p: &Path) -> PathBuf {
        match self {
            Backend::Node { cwd, .. } => cwd.join(p),
            Backend::Direct(_) => p.to_path_buf(),
        }
    }
}

pub fn run(cli: Cli, backend: &Backend, out: &mut String) -> Result<()> {
    let json = cli.json;
    let open = |mode| backend.repo(mode);
    match cli.command {
        Command::Init { name, org } => {
            let repo = open(OpenMode::Create)?;
            repo.set_identity(name, org)?;
            if !json {
                outln!(out, "Rapport data directory: {}", repo.dir().display());
            }
            whoami(out, &repo, json)
        }
        Command::Whoami => whoami(out, &*open(OpenMode::Existing)?, json),
        Command::Up(_) => bail!("a node is already running for this data directory"),
        Command::Open { .. } => bail!("`rapport open` asks the running node itself"),
        Command::Relay(crate::RelayCmd::Run(_)) => {
            bail!("a node is already running for this data directory")
        }
        Command::Relay(crate::RelayCmd::Status) => crate::relay::status(out, backend, json),
        Command::Status => status(out, backend, json),
        Command::Space(cmd) => space(out, backend, cmd, json),
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
            add(
                out,
                &*open(OpenMode::Create)?,
                Kind::Company,
                i,
                extra,
                json,
            )
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
            add(out, &*open(OpenMode::Create)?, Kind::Person, i, extra, json)
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
            add(out, &*open(OpenMode::Create)?, Kind::Deal, i, extra, json)
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
            add(
                out,
                &*open(OpenMode::Create)?,
                Kind::Activity,
                i,
                extra,
                json,
            )
        }
        Command::Task(TaskCmd::Done { reference }) => {
            let repo = open(OpenMode::Existing)?;
            let v = repo.complete_task(&reference)?;
            done(out, &v, "Done:", json)
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
            add(out, &repo, Kind::Ticket, i, extra, json)
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
            add(
                out,
                &*open(OpenMode::Create)?,
                Kind::Campaign,
                i,
                extra,
                json,
            )
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
            list(out, &repo, kind, &views, json)
        }
        Command::Show { reference } => {
            let repo = open(OpenMode::Existing)?;
            let v = repo.resolve(&reference)?;
            show(out, &repo, &v, json)
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
            done(out, &v, "Updated", json)
        }
        Command::Delete { reference } => {
            let repo = open(OpenMode::Existing)?;
            let v = repo.delete(&reference)?;
            if !json {
                outln!(
                    out,
                    "Deleted {} {} (undo: rapport restore {})",
                    v.kind,
                    v.title(),
                    v.id
                );
                return Ok(());
            }
            print_json(out, &v.to_json())
        }
        Command::Restore { reference }
            if crate::recovery::is_backup(&backend.path(reference.as_ref())) =>
        {
            crate::recovery::restore(out, backend, &backend.path(reference.as_ref()), json)
        }
        Command::Backup { out: file } => {
            crate::recovery::backup(out, &*open(OpenMode::Existing)?, &backend.path(&file), json)
        }
        Command::Repair { compact } => crate::recovery::repair(out, backend, compact, json),
        Command::Restore { reference } => {
            let repo = open(OpenMode::Existing)?;
            let v = repo.restore(&reference)?;
            done(out, &v, "Restored", json)
        }
        Command::Audit { space } => {
            crate::membership::audit(out, &*open(OpenMode::Existing)?, &space, json)
        }
        Command::Timeline { reference } => {
            let repo = open(OpenMode::Existing)?;
            let v = repo.resolve(&reference)?;
            timeline(out, &repo, &v, json)
        }
        Command::Pipeline => pipeline(out, &*open(OpenMode::Existing)?, json),
        Command::Export {
            kind,
            format,
            out: dir,
        } => {
            let kind = kind.map(|k| k.parse::<Kind>()).transpose()?;
            let dir = dir.map(|d| backend.path(&d));
            let bar = backend.progress_bar();
            export(
                out,
                &*open(OpenMode::Existing)?,
                kind,
                format,
                dir.as_deref(),
                bar,
                json,
            )
        }
        Command::Fields { kind } => fields(out, kind.parse()?, json),
        Command::Token(cmd) => crate::integrations::run(out, backend, cmd.request(), json),
        Command::Webhook(cmd) => crate::integrations::run(out, backend, cmd.request(), json),
        Command::Bench(crate::BenchCmd::Store { records, dir }) => {
            crate::bench::run(out, records, dir.as_deref(), json)
        }
        Command::Bench(crate::BenchCmd::Search { records }) => {
            crate::bench_search::run(out, &records, json)
        }
        Command::Bench(crate::BenchCmd::Relay { nodes, changes }) => {
            crate::bench_relay::run(out, nodes, changes, json)
        }
        Command::Bench(crate::BenchCmd::Serve { peers, writes }) => {
            crate::bench_serve::run(out, peers, writes, json)
        }
        Command::Bench(crate::BenchCmd::Sync {
            records,
            changed,
            naive,
        }) => crate::bench_sync::run(out, records, changed, naive, json),
    }
}

pub fn data_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(d) => Ok(d),
        None => rapport_node::datadir::default_data_dir().context(
            "this platform has no default data directory; give one with --data-dir or RAPPORT_DATA_DIR",
        ),
    }
}

/// `rapport open`: a one-time login link from the running node, opened in
/// the desktop's browser unless `print`.
pub fn open(dir: &std::path::Path, print: bool, json: bool) -> Result<()> {
    let Some(link) = crate::client::login_link(dir)? else {
        bail!(
            "no node is running for {}; start one with `rapport up` (it prints the web UI's address)",
            dir.display()
        );
    };
    if json {
        println!("{}", serde_json::json!({ "login": link }));
        return Ok(());
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let opened = !print
        && std::process::Command::new(opener)
            .arg(&link)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if opened {
        println!("Opened the web UI in your browser (the login link works once, for 15 minutes).");
    } else {
        println!("Open this link in a browser on this computer (it works once, for 15 minutes):");
        println!("{link}");
    }
    Ok(())
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

pub(crate) fn print_json(out: &mut String, v: &serde_json::Value) -> Result<()> {
    outln!(out, "{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn add(
    out: &mut String,
    repo: &Repo,
    kind: Kind,
    mut inputs: Vec<Input>,
    extra: Extra,
    json: bool,
) -> Result<()> {
    for s in &extra.sets {
        inputs.push(parse_assignment(s)?);
    }
    let space = match &extra.space {
        Some(s) => repo.resolve_space(s)?,
        None => rapport_model::SpaceId::Private,
    };
    let v = repo.create(kind, space, &inputs)?;
    done(out, &v, "Created", json)
}

/// Prints the outcome of a write: the record as JSON, or one line.
fn done(out: &mut String, v: &RecordView, verb: &str, json: bool) -> Result<()> {
    if json {
        return print_json(out, &v.to_json());
    }
    outln!(out, "{verb} {} {}  ({})", v.kind, v.title(), v.id);
    Ok(())
}

fn whoami(out: &mut String, repo: &Repo, json: bool) -> Result<()> {
    let p = repo.profile();
    if json {
        return print_json(
            out,
            &json!({
                "name": p.name, "org": p.org, "device": p.device,
                "data_dir": repo.dir(), "records": repo.store().record_count(),
                "spaces": crate::membership::certifications(repo)?,
            }),
        );
    }
    outln!(
        out,
        "name        {}",
        p.name
            .as_deref()
            .unwrap_or("(not set: rapport init --name NAME)")
    );
    outln!(
        out,
        "org         {}",
        p.org
            .as_deref()
            .unwrap_or("(not set: rapport init --org ORG)")
    );
    outln!(out, "device      {}", p.device);
    outln!(out, "data dir    {}", repo.dir().display());
    outln!(out, "records     {}", repo.store().record_count());
    for c in crate::membership::certifications(repo)?
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        let or_dash = |k: &str| match text(k) {
            t if t.is_empty() => "-".to_string(),
            t => t,
        };
        outln!(
            out,
            "space       {}: {}, user {} of {}, certified by {}{}",
            text("space"),
            text("role"),
            or_dash("user"),
            or_dash("org"),
            text("certified_by"),
            if c["removed"] == true {
                " (removed)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn list(out: &mut String, repo: &Repo, kind: Kind, views: &[RecordView], json: bool) -> Result<()> {
    if json {
        return print_json(
            out,
            &serde_json::Value::Array(views.iter().map(RecordView::to_json).collect()),
        );
    }
    if views.is_empty() {
        outln!(
            out,
            "No {kind} records. Add one with `rapport {kind} add ...`."
        );
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
    outln!(out, "{}", table(&header, &rows));
    outln!(
        out,
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

fn show(out: &mut String, repo: &Repo, v: &RecordView, json: bool) -> Result<()> {
    let race = repo.delete_race(v)?;
    if json {
        let mut j = v.to_json();
        if let (Some(race), Some(o)) = (&race, j.as_object_mut()) {
            let mut r = serde_json::to_value(race)?;
            if let Some(r) = r.as_object_mut() {
                r.insert("summary".into(), race.summary().into());
            }
            o.insert("delete_race".into(), r);
        }
        return print_json(out, &j);
    }
    let mut d = Display::new(repo);
    outln!(out, "{}", d.card(v));
    if let Some(race) = &race {
        outln!(out, "\n! {}", race.summary());
    }
    let related = repo.related(v.id)?;
    let live: Vec<_> = related.iter().filter(|(_, r)| !r.deleted).collect();
    if !live.is_empty() {
        outln!(out, "\nrelated");
        for (field, r) in live {
            outln!(
                out,
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

fn timeline(out: &mut String, repo: &Repo, v: &RecordView, json: bool) -> Result<()> {
    let entries = repo.timeline(v)?;
    if json {
        return print_json(out, &serde_json::to_value(&entries)?);
    }
    let mut d = Display::new(repo);
    outln!(out, "Timeline of {} {}\n", v.kind, v.title());
    for e in &entries {
        match e {
            Entry::Change {
                time,
                author,
                action,
                fields,
                verified,
                race,
                ..
            } => {
                let mark = if *verified {
                    ""
                } else {
                    "  [SIGNATURE DOES NOT VERIFY]"
                };
                outln!(out, "{}  {action} by {author}{mark}", local_time(*time));
                if let Some(race) = race {
                    outln!(out, "    ! {race}");
                }
                for f in fields {
                    let show = |val: &Option<rapport_model::FieldValue>, d: &mut Display| {
                        val.as_ref().map_or("—".to_string(), |x| {
                            clip(&d.value(v.kind, &f.field, x), 50)
                        })
                    };
                    let before = show(&f.before, &mut d);
                    let after = show(&f.after, &mut d);
                    if action == "created" {
                        outln!(out, "    {}: {after}", f.field);
                    } else {
                        outln!(out, "    {}: {before} → {after}", f.field);
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
                outln!(out, "{}  {activity}: {subject}{status}", local_time(*time));
            }
        }
    }
    if entries.is_empty() {
        outln!(out, "(no history)");
    }
    Ok(())
}

fn pipeline(out: &mut String, repo: &Repo, json: bool) -> Result<()> {
    let stages = repo.pipeline()?;
    if json {
        return print_json(out, &serde_json::to_value(&stages)?);
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
    outln!(
        out,
        "{}",
        table(&["stage", "deals", "currency", "total", "weighted"], &rows)
    );
    Ok(())
}

fn fields(out: &mut String, kind: Kind, json: bool) -> Result<()> {
    if json {
        let list: Vec<_> = kind
            .fields()
            .iter()
            .map(|d| json!({"name": d.name, "type": format!("{:?}", d.ty), "required": d.required, "default": d.default, "help": d.help}))
            .collect();
        return print_json(out, &serde_json::Value::Array(list));
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
    outln!(
        out,
        "{}",
        table(&["field", "type", "required", "help"], &rows)
    );
    Ok(())
}

fn export(
    out: &mut String,
    repo: &Repo,
    kind: Option<Kind>,
    format: ExportFormat,
    out_dir: Option<&Path>,
    bar: indicatif::ProgressBar,
    json: bool,
) -> Result<()> {
    let views: Vec<RecordView> = repo.all(kind).collect::<Result<_, _>>()?;
    match (format, out_dir) {
        (ExportFormat::Json, None) => print_json(
            out,
            &serde_json::Value::Array(views.iter().map(RecordView::to_json).collect()),
        ),
        (ExportFormat::Automerge, None) => {
            bail!("--format automerge writes one file per record: give a directory with --out DIR")
        }
        (format, Some(dir)) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            bar.set_length(views.len() as u64);
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
                        let path = dir.join(format!("{k}.json"));
                        std::fs::write(&path, serde_json::to_vec_pretty(&of_kind)?)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        written += 1;
                        bar.inc(of_kind.len() as u64);
                    }
                }
                ExportFormat::Automerge => {
                    for v in &views {
                        let kind_dir = dir.join(v.kind.as_str());
                        std::fs::create_dir_all(&kind_dir)
                            .with_context(|| format!("cannot create {}", dir.display()))?;
                        // Loaded and saved again, so that a document an
                        // earlier version stored with changes still waiting
                        // inside it is exported without them.
                        let bytes = rapport_model::stored::save(&mut repo.load_doc(v.id)?);
                        let path = kind_dir.join(format!("{}.automerge", v.id));
                        std::fs::write(&path, bytes)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        written += 1;
                        bar.inc(1);
                    }
                }
            }
            bar.finish_and_clear();
            if json {
                return print_json(
                    out,
                    &json!({"records": views.len(), "files": written, "out": dir}),
                );
            }
            outln!(
                out,
                "Exported {} records into {} files in {}",
                views.len(),
                written,
                dir.display()
            );
            Ok(())
        }
    }
}

fn status(out: &mut String, backend: &Backend, json: bool) -> Result<()> {
    let Backend::Node { node, .. } = backend else {
        let repo = backend.repo(OpenMode::Existing)?;
        if json {
            return print_json(
                out,
                &json!({"running": false, "records": repo.store().record_count()}),
            );
        }
        outln!(out, "node        not running (start it with `rapport up`)");
        outln!(out, "records     {}", repo.store().record_count());
        return Ok(());
    };
    let s = node.status()?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["running"] = true.into();
        return print_json(out, &v);
    }
    outln!(out, "node        {}", s.node_id);
    outln!(out, "addresses   {}", s.addrs.join(", "));
    outln!(out, "relay       {}", s.relay);
    outln!(
        out,
        "traffic     {} B sent, {} B received, {} frames refused, {} sessions turned away (too many at once)",
        s.bytes_sent,
        s.bytes_received,
        s.refused_frames,
        s.sessions_turned_away
    );
    outln!(
        out,
        "peers       {}",
        if s.connected.is_empty() {
            "none connected".to_string()
        } else {
            s.connected.join(", ")
        }
    );
    let rows: Vec<Vec<String>> = s
        .spaces
        .iter()
        .map(|(id, sp)| {
            vec![
                sp.name.clone(),
                id[..10].to_string(),
                sp.role.map_or("-".into(), |r| r.to_string()),
                sp.members.to_string(),
                sp.records.to_string(),
                sp.pending_out.to_string(),
                crate::output::sync_time(sp.last_sync.as_deref()),
                sp.rejected.to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        outln!(
            out,
            "spaces      none shared yet (`rapport space create NAME`)"
        );
    } else {
        outln!(out);
        outln!(
            out,
            "{}",
            table(
                &[
                    "space",
                    "id",
                    "role",
                    "members",
                    "records",
                    "pending",
                    "last sync (utc)",
                    "rejected"
                ],
                &rows
            )
        );
        for sp in s.spaces.values() {
            if let Some(reason) = &sp.refused {
                outln!(out, "{}: a member refused to sync: {reason}", sp.name);
            }
        }
    }
    Ok(())
}

fn space(out: &mut String, backend: &Backend, cmd: SpaceCmd, json: bool) -> Result<()> {
    match cmd {
        SpaceCmd::Create { name } => {
            let repo = backend.repo(OpenMode::Create)?;
            let v = repo.create_space(&name)?;
            if json {
                return print_json(out, &serde_json::to_value(&v)?);
            }
            outln!(out, "Created space {} ({})", v.name, v.id);
            outln!(
                out,
                "Invite a partner with: rapport space invite \"{}\"",
                v.name
            );
            Ok(())
        }
        SpaceCmd::List => {
            let repo = backend.repo(OpenMode::Existing)?;
            let spaces = repo.spaces()?;
            if json {
                return print_json(out, &serde_json::to_value(&spaces)?);
            }
            if spaces.is_empty() {
                outln!(
                    out,
                    "No shared spaces. Create one with `rapport space create NAME`, or join one with a ticket."
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = spaces
                .iter()
                .map(|s| {
                    let records = repo.space_record_count(s.id);
                    vec![
                        s.name.clone(),
                        s.id.to_string(),
                        s.members.len().to_string(),
                        records.to_string(),
                    ]
                })
                .collect();
            outln!(
                out,
                "{}",
                table(&["space", "id", "members", "records"], &rows)
            );
            Ok(())
        }
        SpaceCmd::Members { space } => {
            crate::membership::members(out, &*backend.repo(OpenMode::Existing)?, &space, json)
        }
        SpaceCmd::Remove { space, member } => crate::membership::remove(
            out,
            &*backend.repo(OpenMode::Existing)?,
            &space,
            &member,
            json,
        ),
        SpaceCmd::Invite {
            space,
            role,
            org,
            ttl_hours,
        } => {
            let node = backend.node("inviting")?;
            let rapport_model::SpaceId::Shared(id) = node.repo().resolve_space(&space)? else {
                bail!(
                    "the private space cannot be shared; create a shared one with `rapport space create NAME`"
                );
            };
            let ticket = node.invite(id, (ttl_hours * 3600.0) as i64, role, org)?;
            let text = ticket.encode();
            if json {
                return print_json(out, &json!({"ticket": text, "expires": ticket.expires}));
            }
            outln!(out, "{text}");
            outln!(out);
            outln!(
                out,
                "Grants the {role} role; one use, valid {ttl_hours} h. On the other node: rapport space join <ticket>"
            );
            Ok(())
        }
        SpaceCmd::Join { ticket } => {
            let node = backend.node("joining")?;
            let ticket = rapport_proto::wire::Ticket::decode(&ticket)?;
            let handle = tokio::runtime::Handle::current();
            let view = handle.block_on(node.join(&ticket))?;
            if json {
                return print_json(out, &serde_json::to_value(&view)?);
            }
            let records = node.repo().space_record_count(view.id);
            outln!(
                out,
                "Joined space {} ({}): {} members, {} records so far",
                view.name,
                view.id,
                view.members.len(),
                records
            );
            Ok(())
        }
    }
}
