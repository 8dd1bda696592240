//! `rapport relay status`: what an admin watches on a relay.

use anyhow::{Result, bail};
use rapport_node::limits::human_bytes;
use rapport_node::ops::Status;

use crate::commands::print_json;
use crate::output::table;

pub fn status(out: &mut String, status: &Status, json: bool) -> Result<()> {
    let Some(s) = &status.net else {
        bail!(
            "the relay is not running: start it with `rapport relay run` (see docs/admin-guide.md)"
        );
    };
    if json {
        return print_json(out, &serde_json::to_value(status)?);
    }
    let relay = status.is_relay;
    let uptime = s.uptime_s;
    outln!(
        out,
        "node          {}{}",
        s.node_id,
        if relay { " (relay)" } else { "" }
    );
    outln!(out, "listening     {}", s.addrs.join(", "));
    outln!(
        out,
        "uptime        {}d {:02}:{:02}:{:02}",
        uptime / 86_400,
        uptime / 3600 % 24,
        uptime / 60 % 60,
        uptime % 60
    );
    outln!(out, "peers now     {}", s.connected.len());
    outln!(out, "peers seen    {} since start", s.peers_seen.len());
    outln!(out, "changes       {} stored", s.changes_stored);
    outln!(
        out,
        "traffic       {} in, {} out",
        human_bytes(s.bytes_received),
        human_bytes(s.bytes_sent)
    );
    outln!(out, "disk          {}", human_bytes(s.disk_bytes));
    outln!(
        out,
        "limits        {} per space, {} changes a minute per peer",
        s.quota_bytes.map_or("no quota".into(), human_bytes),
        s.changes_per_minute
            .map_or("no limit".into(), |r| r.to_string())
    );
    outln!(
        out,
        "refused       {} changes over a peer's rate, {} over a quota",
        s.rate_limited,
        s.over_quota
    );
    if let Some(last) = &s.last_limit {
        outln!(out, "last refusal  {last}");
    }
    let rows: Vec<Vec<String>> = s
        .spaces
        .iter()
        .map(|(id, sp)| {
            vec![
                sp.name.clone(),
                id[..10.min(id.len())].to_string(),
                sp.role.map_or("-".into(), |r| r.to_string()),
                sp.members.to_string(),
                sp.records.to_string(),
                match s.quota_bytes {
                    Some(q) => format!("{} of {}", human_bytes(sp.stored_bytes), human_bytes(q)),
                    None => human_bytes(sp.stored_bytes),
                },
                crate::output::sync_time(sp.last_sync.as_deref()),
                sp.rejected.to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        outln!(
            out,
            "spaces        none yet: an admin runs `rapport space invite SPACE --role relay`, then `rapport --data-dir DIR space join TICKET` here"
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
                    "stored",
                    "last sync (utc)",
                    "rejected"
                ],
                &rows
            )
        );
    }
    Ok(())
}
