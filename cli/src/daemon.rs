//! `rapport up`: the node in the foreground.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use rapport_node::api::{Api, ExecRequest, ExecResponse};
use rapport_node::net::{NetConfig, Node};
use rapport_node::{OpenMode, Repo};

use crate::commands::{self, Backend};
use crate::{Cli, UpArgs};

pub fn up(dir: &Path, args: UpArgs, json: bool) -> Result<()> {
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
    runtime.block_on(serve(dir, args, json))
}

async fn serve(dir: &Path, args: UpArgs, json: bool) -> Result<()> {
    let repo = Arc::new(Repo::open(dir, OpenMode::Create)?);
    let added = if args.demo {
        rapport_node::demo::seed(&repo)?
    } else {
        0
    };
    let config = NetConfig {
        bind: args.bind,
        relay: args.relay,
        mdns: !args.no_mdns,
        sync_interval: Some(Duration::from_secs(args.sync_interval.max(1))),
        live: true,
    };
    let node = Node::start(repo.clone(), config).await?;
    let api = Api::start(dir, args.api, node.clone(), Arc::new(exec)).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "node_id": node.id().to_string(),
                "addrs": node.addrs(),
                "api": api.info.addr,
                "data_dir": dir,
                "demo_records_added": added,
            })
        );
    } else {
        println!("Rapport node running. Data: {}", dir.display());
        println!("node id    {}", node.id());
        println!("listening  {}", node.addrs().join(", "));
        println!(
            "local API  http://{} (token in {})",
            api.info.addr,
            dir.join(rapport_node::api::API_FILE).display()
        );
        if added > 0 {
            println!("Loaded {added} demo records.");
        }
        println!(
            "{} records. In another terminal: rapport list company, rapport status",
            repo.store().record_count()
        );
        println!("Stop with Ctrl-C.");
    }
    wait_for_shutdown().await;
    eprintln!("Stopping...");
    api.stop();
    node.shutdown().await;
    Ok(())
}

/// A CLI command forwarded by the local API, run against the node's store.
fn exec(node: &Node, req: ExecRequest) -> ExecResponse {
    let mut argv = vec!["rapport".to_string()];
    argv.extend(req.args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            let code = if e.use_stderr() { 2 } else { 0 };
            return if code == 0 {
                ExecResponse {
                    code,
                    stdout: text,
                    stderr: String::new(),
                }
            } else {
                ExecResponse {
                    code,
                    stdout: String::new(),
                    stderr: text,
                }
            };
        }
    };
    let backend = Backend::Node {
        node: node.clone(),
        cwd: req.cwd,
    };
    let mut out = String::new();
    match commands::run(cli, &backend, &mut out) {
        Ok(()) => ExecResponse {
            code: 0,
            stdout: out,
            stderr: String::new(),
        },
        Err(e) => ExecResponse {
            code: 1,
            stdout: out,
            stderr: format!("error: {e:#}\n"),
        },
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
