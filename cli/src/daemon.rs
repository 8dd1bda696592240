//! `rapport up` and `rapport relay run`: the node in the foreground.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rapport_node::api::{Api, UiLinks};
use rapport_node::limits::Limits;
use rapport_node::net::{NetConfig, Node};
use rapport_node::{OpenMode, Repo};

use crate::{NetArgs, RelayArgs, UpArgs};

/// What the foreground node is.
pub enum Mode {
    /// A user's node (`rapport up`).
    Node(UpArgs),
    /// An always-on relay (`rapport relay run`).
    Relay(RelayArgs),
}

pub fn up(dir: &Path, mode: Mode, json: bool) -> Result<()> {
    if let Some(info) = rapport_node::api::read_info(dir)
        && std::net::TcpStream::connect_timeout(&info.addr, Duration::from_secs(1)).is_ok()
    {
        bail!(
            "a node is already running for {} (pid {}); stop it first, or use another --data-dir",
            dir.display(),
            info.pid
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(dir, mode, json))
}

async fn serve(dir: &Path, mode: Mode, json: bool) -> Result<()> {
    let repo = Arc::new(Repo::open(dir, OpenMode::Create)?);
    // The HTTP API for integrations: a user's node serves it, a relay
    // (which holds no records of its own) does not.
    let http_api_bind = match &mode {
        Mode::Node(args) => Some(args.api_bind),
        Mode::Relay(_) => None,
    };
    let (config, api_addr, demo, metrics, (iroh_relay, discovery), ui_bind) = match mode {
        Mode::Node(args) => (
            net_config(&args.net, Limits::default()),
            args.net.api,
            args.demo,
            metrics_args(&args.net)?,
            (None, None),
            (!args.no_ui).then_some(args.ui_bind),
        ),
        Mode::Relay(args) => {
            let me = repo.device_id().to_string();
            if let Some(s) = repo.spaces()?.iter().find(|s| {
                s.role_of(&me)
                    .is_some_and(|r| r != rapport_model::Role::Relay)
            }) {
                bail!(
                    "this device is a {} of space {}; a relay needs a data directory of its own, invited with --role relay",
                    s.role_of(&me).map(|r| r.to_string()).unwrap_or_default(),
                    s.name
                );
            }
            if !repo.profile().relay && repo.record_count() > 0 {
                bail!(
                    "{} holds records of its own; a relay needs a data directory of its own (for example --data-dir /var/lib/rapport-relay)",
                    dir.display()
                );
            }
            repo.become_relay()?;
            (
                net_config(
                    &args.net,
                    Limits {
                        space_quota: Some(args.quota),
                        changes_per_minute: Some(args.rate),
                    },
                ),
                args.net.api,
                false,
                metrics_args(&args.net)?,
                (args.iroh_relay, args.discovery_server),
                None,
            )
        }
    };
    let relay = repo.profile().relay;
    let added = if demo {
        rapport_node::demo::seed(&repo)?
    } else {
        0
    };
    // The iroh relay server first, so that this node can use it as its own.
    let iroh_relay = match iroh_relay {
        Some(addr) => Some(start_iroh_relay(addr).await?),
        None => None,
    };
    let discovery = match discovery {
        Some(addr) => Some(crate::discovery::start(addr).await?),
        None => None,
    };
    // One feed of what happens to records, for the web UI's search and
    // live pages and the API's events; following the store before the
    // node starts catching up, so that no record synced meanwhile is
    // missed.
    let live = rapport_node::live::Live::start(repo.clone());
    let node = Node::start(repo.clone(), config).await?;
    let ops = rapport_node::ops::Ops::running(node.clone(), Some(live.clone()));
    let token = rapport_node::api::new_token()?;
    let ui = match ui_bind {
        Some(bind) => Some(rapport_web::Ui::start(ops.clone(), bind, token.clone()).await?),
        None => None,
    };
    let links = ui.as_ref().map(|ui| UiLinks {
        url: ui.url.clone(),
        login_link: ui.login_links(),
    });
    let api = Api::start(dir, api_addr, ops.clone(), token, links).await?;
    let login = ui.as_ref().map(|ui| ui.login_link());
    // The HTTP API for integrations, on the same operations and live feed.
    let http_api = match http_api_bind {
        Some(bind) => {
            let config = rapport_api::ApiConfig {
                any_port_if_taken: bind.is_none(),
                ..rapport_api::ApiConfig::default()
            };
            let bind = bind.unwrap_or(rapport_api::DEFAULT_BIND);
            Some(rapport_api::start(ops.clone(), bind, config).await?)
        }
        None => None,
    };
    let metrics = match metrics {
        Some((addr, token)) => Some(rapport_node::metrics::serve(addr, node.clone(), token).await?),
        None => None,
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "node_id": node.id().to_string(),
                "addrs": node.addrs(),
                "api": api.info.addr,
                "data_dir": dir,
                "demo_records_added": added,
                "ui": ui.as_ref().map(|ui| &ui.url),
                "login": login,
                "relay": relay,
                "metrics": metrics.as_ref().map(|(a, _)| a),
                "iroh_relay": iroh_relay.as_ref().and_then(|s| s.http_addr()),
                "discovery_server": discovery.as_ref().map(|d| d.addr),
                "http_api": http_api.as_ref().map(|a| a.url()),
            })
        );
    } else {
        if relay {
            println!("Rapport relay running. Data: {}", dir.display());
        } else {
            println!("Rapport node running. Data: {}", dir.display());
        }
        println!("node id    {}", node.id());
        println!("listening  {}", node.addrs().join(", "));
        println!(
            "local API  http://{} (token in {})",
            api.info.addr,
            dir.join(rapport_node::api::API_FILE).display()
        );
        if let (Some(ui), Some(login)) = (&ui, &login) {
            println!("web UI     {}", ui.url);
            println!("           log in: {login}");
            println!("           (works once, for 15 minutes; `rapport open` makes another)");
            if !ui.addr.ip().is_loopback() {
                println!(
                    "           served to the network on {}: anyone who can reach it sees the login page",
                    ui.addr
                );
            }
        }
        if let Some((addr, _)) = &metrics {
            println!("metrics    http://{addr}/metrics");
        }
        if let Some(a) = &http_api {
            println!("HTTP API   {} (tokens: rapport token create NAME)", a.url());
        }
        if let Some(addr) = iroh_relay.as_ref().and_then(|s| s.http_addr()) {
            println!(
                "iroh relay http://{addr} (nodes: rapport up --relay http://HOST:{})",
                addr.port()
            );
        }
        if let Some(d) = &discovery {
            println!(
                "discovery  {} (nodes: rapport up --discovery {})",
                d.url_for(&d.addr.ip().to_string()),
                d.url_for("HOST")
            );
        }
        if added > 0 {
            println!("Loaded {added} demo records.");
        }
        if relay {
            println!(
                "Add it to a space: rapport space invite SPACE --role relay, then rapport --data-dir {} space join TICKET",
                dir.display()
            );
        } else {
            println!(
                "{} records. Open the login link above, or in another terminal: rapport open, rapport list company",
                repo.record_count()
            );
        }
        println!("Stop with Ctrl-C.");
    }
    wait_for_shutdown().await;
    eprintln!("Stopping...");
    if let Some((_, stop)) = metrics {
        let _ = stop.send(());
    }
    api.stop();
    if let Some(a) = http_api {
        a.stop();
    }
    if let Some(ui) = ui {
        ui.stop();
    }
    live.stop();
    node.shutdown().await;
    if let Some(d) = discovery {
        let _ = d.stop.send(());
    }
    if let Some(server) = iroh_relay
        && let Err(e) = server.shutdown().await
    {
        tracing::warn!("the iroh relay server stopped with an error: {e}");
    }
    Ok(())
}

/// What one client may send through the iroh relay: 4 MiB/s, bursts of 16 MiB.
const IROH_RELAY_BYTES_PER_S: std::num::NonZeroU32 =
    std::num::NonZeroU32::new(4 << 20).expect("non-zero");
const IROH_RELAY_BURST: std::num::NonZeroU32 =
    std::num::NonZeroU32::new(16 << 20).expect("non-zero");

/// An iroh relay server on `addr`, plain HTTP: it forwards end-to-end
/// encrypted QUIC traffic between nodes that cannot reach each other.
async fn start_iroh_relay(addr: std::net::SocketAddr) -> Result<iroh_relay::server::Server> {
    let mut config = iroh_relay::server::ServerConfig::default();
    let mut relay = iroh_relay::server::RelayConfig::new(addr);
    // It admits any iroh node (a joiner reaches its inviter through it
    // before it is a member) and forwards only end-to-end encrypted
    // traffic; a per-client rate bounds what a stranger can use it for.
    let mut rate = iroh_relay::server::ClientRateLimit::new(IROH_RELAY_BYTES_PER_S);
    rate.max_burst_bytes = Some(IROH_RELAY_BURST);
    relay.limits.client_rx = Some(rate);
    config.relay = Some(relay);
    iroh_relay::server::Server::spawn(config)
        .await
        .with_context(|| format!("cannot start the iroh relay server on {addr}"))
}

/// Where to serve metrics, and the token a scrape must send (read from
/// `--metrics-token-file`; never printed or logged).
fn metrics_args(args: &NetArgs) -> Result<Option<(std::net::SocketAddr, Option<String>)>> {
    let Some(addr) = args.metrics else {
        return Ok(None);
    };
    let token = match &args.metrics_token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the metrics token file {}", path.display())
            })?;
            let token = text.trim();
            if token.is_empty() {
                bail!("the metrics token file {} is empty", path.display());
            }
            Some(token.to_string())
        }
        None => None,
    };
    Ok(Some((addr, token)))
}

fn net_config(args: &NetArgs, limits: Limits) -> NetConfig {
    NetConfig {
        bind: args.bind.clone(),
        relay: args.relay.clone(),
        discovery: args.discovery.clone(),
        mdns: !args.no_mdns,
        sync_interval: Some(Duration::from_secs(args.sync_interval.max(1))),
        live: true,
        limits,
    }
}

async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
