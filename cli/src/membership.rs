//! Who is in a shared space and what happened to its membership, as
//! `space members`, `space remove` and `audit` show it.

use anyhow::Result;
use rapport_node::ops::{AuditReply, MemberRow, MembersReply};

use crate::commands::{audit_json, members_json, or_dash, print_json, removed_lines, short};
use crate::output::{local_time, table};

/// `rapport space members SPACE`
pub fn members(out: &mut String, m: &MembersReply, json: bool) -> Result<()> {
    if json {
        return print_json(out, &members_json(m));
    }
    let row = |r: &MemberRow| {
        vec![
            or_dash(&r.org),
            or_dash(&r.user),
            format!("{}{}", short(&r.device), if r.you { " (you)" } else { "" }),
            r.role.to_string(),
            local_time(r.since),
            r.added_by.clone(),
            match &r.removed {
                None => "member".into(),
                Some((at, by)) => format!("removed {} by {by}", local_time(*at)),
            },
        ]
    };
    let mut rows: Vec<Vec<String>> = m
        .members
        .iter()
        .filter(|r| r.removed.is_none())
        .map(row)
        .collect();
    rows.sort();
    rows.extend(m.members.iter().filter(|r| r.removed.is_some()).map(row));
    outln!(out, "Space {} ({})", m.space.name, m.space.id);
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
pub fn removed(out: &mut String, removed: &[MemberRow], json: bool) -> Result<()> {
    if json {
        return print_json(out, &serde_json::to_value(removed)?);
    }
    removed_lines(out, removed);
    outln!(
        out,
        "Other members stop serving it as they hear of the removal; what it writes from now on is refused everywhere."
    );
    Ok(())
}

/// `rapport audit SPACE`
pub fn audit(out: &mut String, a: &AuditReply, json: bool) -> Result<()> {
    if json {
        return print_json(out, &audit_json(a));
    }
    outln!(out, "Space {} ({})", a.space.name, a.space.id);
    outln!(out);
    outln!(out, "Membership changes");
    let rows: Vec<Vec<String>> = a
        .statements
        .iter()
        .map(|s| {
            vec![
                local_time(s.time),
                s.author.clone(),
                s.what.clone(),
                s.verdict.clone(),
            ]
        })
        .collect();
    outln!(out, "{}", table(&["when", "by", "what", "verdict"], &rows));
    outln!(out);
    if a.rejections.is_empty() {
        outln!(out, "Refused changes: none");
        return Ok(());
    }
    outln!(out, "Refused changes");
    let rows: Vec<Vec<String>> = a
        .rejections
        .iter()
        .map(|r| {
            vec![
                local_time(r.at),
                r.author.clone(),
                r.from.clone(),
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
