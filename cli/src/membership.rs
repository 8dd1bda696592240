//! Who is in a shared space and what happened to its membership:
//! `space members`, `space remove`, `audit`, and the certification chain
//! `whoami` shows.

use anyhow::{Result, bail};
use rapport_model::{RecordId, SpaceId, SpaceView};
use rapport_node::Repo;
use rapport_trust::policy::{Action, Verdict};
use serde_json::json;

use crate::commands::print_json;
use crate::output::{local_time, table};

fn shared(repo: &Repo, reference: &str) -> Result<RecordId> {
    match repo.resolve_space(reference)? {
        SpaceId::Shared(id) => Ok(id),
        SpaceId::Private => {
            bail!("the private space has only this device; `rapport space list` shows shared ones")
        }
    }
}

fn short(device: &str) -> String {
    device.get(..12).unwrap_or(device).to_string()
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// `rapport space members SPACE`
pub fn members(out: &mut String, repo: &Repo, reference: &str, json: bool) -> Result<()> {
    let id = shared(repo, reference)?;
    let Some(view) = repo.space(id)? else {
        bail!("no space matches `{reference}`");
    };
    if json {
        return print_json(out, &serde_json::to_value(&view)?);
    }
    let me = repo.device_id().to_string();
    let mut rows: Vec<Vec<String>> = view
        .members
        .values()
        .map(|m| {
            vec![
                or_dash(&m.org),
                or_dash(&m.user),
                format!(
                    "{}{}",
                    short(&m.device),
                    if m.device == me { " (you)" } else { "" }
                ),
                m.role.to_string(),
                local_time(m.since),
                repo.device_label(&view, &m.added_by),
                "member".into(),
            ]
        })
        .collect();
    rows.sort();
    for (m, r) in view.removed.values() {
        rows.push(vec![
            or_dash(&m.org),
            or_dash(&m.user),
            short(&m.device),
            m.role.to_string(),
            local_time(m.since),
            repo.device_label(&view, &m.added_by),
            format!(
                "removed {} by {}",
                local_time(r.at),
                repo.device_label(&view, &r.by)
            ),
        ]);
    }
    outln!(out, "Space {} ({})", view.name, view.id);
    outln!(
        out,
        "{}",
        table(
            &[
                "organisation",
                "user",
                "device",
                "role",
                "since",
                "added by",
                "status"
            ],
            &rows
        )
    );
    Ok(())
}

/// `rapport space remove SPACE MEMBER`
pub fn remove(out: &mut String, repo: &Repo, space: &str, member: &str, json: bool) -> Result<()> {
    let id = shared(repo, space)?;
    let removed = repo.remove_members(id, member)?;
    if json {
        return print_json(out, &serde_json::to_value(&removed)?);
    }
    for m in &removed {
        outln!(
            out,
            "Removed {} ({}, {}) from the space.",
            short(&m.device),
            or_dash(&m.user),
            or_dash(&m.org)
        );
    }
    outln!(
        out,
        "Other members stop serving it as they hear of the removal; what it writes from now on is refused everywhere."
    );
    Ok(())
}

/// `rapport audit SPACE`
pub fn audit(out: &mut String, repo: &Repo, reference: &str, json: bool) -> Result<()> {
    let id = shared(repo, reference)?;
    let audit = repo.audit(id)?;
    if json {
        return print_json(out, &serde_json::to_value(&audit)?);
    }
    let view = &audit.space;
    outln!(out, "Space {} ({})", view.name, view.id);
    outln!(out);
    outln!(out, "Membership changes");
    let rows: Vec<Vec<String>> = audit
        .statements
        .iter()
        .map(|s| {
            vec![
                local_time(s.time),
                repo.device_label(view, &s.author),
                describe(repo, view, &s.actions),
                match &s.verdict {
                    Verdict::Accepted => "accepted".into(),
                    Verdict::Rejected(r) => format!("refused: {r}"),
                    Verdict::Held(r) => format!("kept aside: {r}"),
                    Verdict::Waiting => "waiting for earlier changes".into(),
                },
            ]
        })
        .collect();
    outln!(out, "{}", table(&["when", "by", "what", "verdict"], &rows));
    outln!(out);
    if audit.rejections.is_empty() {
        outln!(out, "Refused changes: none");
        return Ok(());
    }
    outln!(out, "Refused changes");
    let rows: Vec<Vec<String>> = audit
        .rejections
        .iter()
        .map(|r| {
            vec![
                local_time(r.at),
                r.author
                    .as_deref()
                    .map_or("unknown".into(), |a| repo.device_label(view, a)),
                repo.device_label(view, &r.from),
                r.record.get(..10).unwrap_or(&r.record).to_string(),
                r.reason.clone(),
            ]
        })
        .collect();
    outln!(
        out,
        "{}",
        table(&["when", "author", "from", "record", "reason"], &rows)
    );
    Ok(())
}

fn describe(repo: &Repo, view: &SpaceView, actions: &[Action]) -> String {
    let parts: Vec<String> = actions
        .iter()
        .map(|a| match a {
            Action::Create { name } => format!("created the space \"{name}\""),
            Action::Add { member } => format!(
                "added {} ({}) as {}",
                crate::membership::short(&member.device),
                repo.device_label(view, &member.device),
                member.role
            ),
            Action::Remove { removal } => format!(
                "removed {} ({})",
                short(&removal.device),
                repo.device_label(view, &removal.device)
            ),
            Action::Rename { name } => format!("renamed the space \"{name}\""),
            Action::Rotate => "renewed the topic secret".into(),
            Action::Cutoff { device, records } => format!(
                "named {records} more records {} wrote before its removal",
                short(device)
            ),
            Action::Unknown => "an unrecognised change".into(),
        })
        .collect();
    parts.join("; ")
}

/// This device's certifications: per space, its role and who vouched.
pub fn certifications(repo: &Repo) -> Result<serde_json::Value> {
    let me = repo.device_id().to_string();
    let mut out = Vec::new();
    for s in repo.spaces()? {
        if let Some(m) = s.entry(&me) {
            out.push(json!({
                "space": s.name, "id": s.id, "role": m.role, "user": m.user, "org": m.org,
                "certified_by": repo.device_label(&s, &m.added_by),
                "removed": s.removed.contains_key(&me),
            }));
        }
    }
    Ok(serde_json::Value::Array(out))
}
