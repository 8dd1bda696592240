//! `rapport token` and `rapport webhook`: what integrations may do
//! through the HTTP API, and what they are told. Each command is one
//! typed operation (`rapport_node::ops`), run on the running node or on
//! the data directory; this module only builds the request and prints the
//! reply.

use clap::Subcommand;
use rapport_node::live::EventType;
use rapport_node::ops::{Reply, Request};

use crate::output::{local_time, table};

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCmd {
    /// Make a token for the HTTP API; it is printed once (only its hash is kept).
    Create {
        /// A name for it (letters, digits, -, _, .), shown in the timeline of every change made with it.
        name: String,
        /// It may read but not write.
        #[arg(long)]
        read_only: bool,
        /// It sees and writes only this shared space (name or id).
        #[arg(long, value_name = "SPACE")]
        space: Option<String>,
    },
    /// The tokens (never their secrets).
    List,
    /// Revoke a token: requests that send it are refused from now on.
    Revoke { name: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum WebhookCmd {
    /// Call URL (http://) with a signed JSON POST on every event of the given types.
    Add {
        url: String,
        /// Comma-separated: record.created, record.changed, record.deleted, record.restored,
        /// record.removed, deal.stage_changed.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<EventType>,
        /// Only records of this shared space (name or id).
        #[arg(long, value_name = "SPACE")]
        space: Option<String>,
    },
    /// The webhooks, with their state.
    List,
    /// Stop calling a webhook.
    Remove { id: String },
    /// Turn a webhook disabled after repeated failures back on.
    Enable { id: String },
    /// Delivery attempts, oldest first: every webhook's, or one's.
    Log { id: Option<String> },
}

impl TokenCmd {
    pub fn request(self) -> Request {
        match self {
            TokenCmd::Create {
                name,
                read_only,
                space,
            } => Request::TokenCreate {
                name,
                read_only,
                space,
            },
            TokenCmd::List => Request::TokenList,
            TokenCmd::Revoke { name } => Request::TokenRevoke { name },
        }
    }
}

impl WebhookCmd {
    pub fn request(self) -> Request {
        match self {
            WebhookCmd::Add { url, events, space } => Request::WebhookAdd { url, events, space },
            WebhookCmd::List => Request::WebhookList,
            WebhookCmd::Remove { id } => Request::WebhookRemove { id },
            WebhookCmd::Enable { id } => Request::WebhookEnable { id },
            WebhookCmd::Log { id } => Request::WebhookLog { id },
        }
    }
}

fn space_text(space: Option<String>) -> String {
    space.unwrap_or_else(|| "all".into())
}

/// The reply as people read it.
pub fn render(out: &mut String, reply: &Reply) {
    match reply {
        Reply::Token(t) => match &t.secret {
            Some(secret) => {
                let access = if t.token.read_only {
                    "read-only"
                } else {
                    "read-write"
                };
                let scope = match (&t.token.space_name, t.token.space) {
                    (Some(name), _) => format!(", space {name}"),
                    (None, Some(s)) => format!(", space {s}"),
                    _ => String::new(),
                };
                outln!(out, "Token {} ({access}{scope}) created.", t.token.name);
                outln!(out, "It is shown only this once; keep it secret:");
                outln!(out);
                outln!(out, "  {secret}");
                outln!(out);
                outln!(
                    out,
                    "Send it as `Authorization: Bearer TOKEN` (see docs/api.md)."
                );
            }
            None => outln!(out, "Revoked token {}.", t.token.name),
        },
        Reply::Tokens { tokens } => {
            if tokens.is_empty() {
                outln!(out, "No tokens. Make one: rapport token create NAME");
                return;
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        if t.read_only { "read" } else { "read, write" }.into(),
                        space_text(
                            t.space_name
                                .clone()
                                .or_else(|| t.space.map(|s| s.to_string())),
                        ),
                        local_time(t.created),
                    ]
                })
                .collect();
            out.push_str(&table(&["NAME", "MAY", "SPACE", "CREATED"], &rows));
        }
        Reply::Webhook(w) => match &w.secret {
            Some(secret) => {
                outln!(out, "Webhook {} added: {}", w.webhook.id, w.webhook.url);
                outln!(
                    out,
                    "events: {}",
                    w.webhook
                        .events
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                outln!(
                    out,
                    "Signing secret (shown only this once; check X-Rapport-Signature with it):"
                );
                outln!(out);
                outln!(out, "  {secret}");
                outln!(out);
                outln!(out, "Deliveries start while the node runs (`rapport up`).");
            }
            None if w.removed => {
                outln!(out, "Webhook {} ({}) removed.", w.webhook.id, w.webhook.url)
            }
            None => outln!(out, "Webhook {} ({}) enabled.", w.webhook.id, w.webhook.url),
        },
        Reply::Webhooks { webhooks } => {
            if webhooks.is_empty() {
                outln!(
                    out,
                    "No webhooks. Add one: rapport webhook add URL --events record.created"
                );
                return;
            }
            let rows: Vec<Vec<String>> = webhooks
                .iter()
                .map(|w| {
                    vec![
                        w.id.clone(),
                        w.url.clone(),
                        w.events
                            .iter()
                            .map(|e| e.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        space_text(w.space.map(|s| s.to_string())),
                        match &w.disabled {
                            Some(why) => format!("DISABLED: {why}"),
                            None if w.failures > 0 => format!("failing ({} in a row)", w.failures),
                            None => "active".into(),
                        },
                    ]
                })
                .collect();
            out.push_str(&table(&["ID", "URL", "EVENTS", "SPACE", "STATE"], &rows));
        }
        Reply::Deliveries { deliveries } => {
            if deliveries.is_empty() {
                outln!(out, "No deliveries yet.");
                return;
            }
            let rows: Vec<Vec<String>> = deliveries
                .iter()
                .map(|d| {
                    vec![
                        local_time(d.at),
                        d.webhook.clone(),
                        d.event_type.as_str().into(),
                        d.event.clone(),
                        d.attempt.to_string(),
                        match (&d.error, d.status) {
                            (None, Some(s)) => format!("ok ({s})"),
                            (Some(e), _) => e.clone(),
                            (None, None) => "ok".into(),
                        },
                        format!("{} ms", d.millis),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "TIME", "WEBHOOK", "EVENT", "CURSOR", "TRY", "RESULT", "TOOK",
                ],
                &rows,
            ));
        }
        other => {
            outln!(
                out,
                "{}",
                serde_json::to_string_pretty(other).unwrap_or_default()
            );
        }
    }
}
