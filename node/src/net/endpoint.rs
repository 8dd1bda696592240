//! The iroh endpoint: which relays, which addresses and ports, and how
//! peers' addresses are found.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use iroh::address_lookup::{
    AddrFilter, DnsAddressLookup, MemoryLookup, PkarrPublisher, PkarrResolver,
};
use iroh::endpoint::presets;
use iroh::{Endpoint, RelayMode, SecretKey};

use super::{NetConfig, NetError};

/// Which relays the node uses to reach peers it cannot reach directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayChoice {
    /// Direct connections only (LAN, loopback, public addresses).
    Disabled,
    /// iroh's public relays.
    Default,
    /// A relay of your own, e.g. one run by `rapport relay`.
    Custom(String),
}

impl std::str::FromStr for RelayChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "off" | "disabled" => Ok(RelayChoice::Disabled),
            "default" => Ok(RelayChoice::Default),
            url if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(RelayChoice::Custom(url.to_string()))
            }
            other => Err(format!(
                "`{other}` is not a relay choice: use none, default, or a relay URL (https://...)"
            )),
        }
    }
}

impl RelayChoice {
    /// How `rapport status` names it.
    pub(super) fn label(&self) -> String {
        match self {
            RelayChoice::Disabled => "none".into(),
            RelayChoice::Default => "default".into(),
            RelayChoice::Custom(u) => u.clone(),
        }
    }
}

/// Where the node publishes its addresses under its node id, and looks up
/// the addresses of peers it knows by id only (pkarr: signed DNS records
/// kept by a server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryChoice {
    /// None: peers are found from tickets, members' announcements and mDNS.
    Disabled,
    /// number 0's public servers (dns.iroh.link); only the home relay is
    /// published there, never an IP address.
    Default,
    /// A pkarr server of your own (`https://HOST/pkarr`); direct addresses
    /// are published there too.
    Custom(String),
}

impl std::str::FromStr for DiscoveryChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "off" | "disabled" => Ok(DiscoveryChoice::Disabled),
            "default" => Ok(DiscoveryChoice::Default),
            url if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(DiscoveryChoice::Custom(url.to_string()))
            }
            other => Err(format!(
                "`{other}` is not a discovery choice: use none, default, or a pkarr server URL (https://HOST/pkarr)"
            )),
        }
    }
}

impl DiscoveryChoice {
    /// How `rapport status` names it.
    pub(super) fn label(&self) -> String {
        match self {
            DiscoveryChoice::Disabled => "none".into(),
            DiscoveryChoice::Default => "default".into(),
            DiscoveryChoice::Custom(u) => u.clone(),
        }
    }
}

/// Binds the endpoint with the device key as its identity, and sets up how
/// it finds peers: addresses it is told ([`MemoryLookup`]) and, if asked,
/// mDNS on the local network.
pub(super) async fn open(
    dir: &Path,
    secret: SecretKey,
    config: &NetConfig,
) -> Result<(Endpoint, MemoryLookup), NetError> {
    let relay_mode = match &config.relay {
        RelayChoice::Disabled => RelayMode::Disabled,
        RelayChoice::Default => RelayMode::Default,
        RelayChoice::Custom(url) => RelayMode::custom([url
            .parse()
            .map_err(|e| NetError::Bind(format!("relay URL {url}: {e}")))?]),
    };
    // Keep the port of the last run where the user left it to us: peers
    // remember our address, and a node that comes back on a new port
    // is one nobody can find.
    let wanted = if config.bind.is_empty() {
        vec![SocketAddr::from(([0, 0, 0, 0], 0))]
    } else {
        config.bind.clone()
    };
    let saved = load_ports(dir);
    let reuse: Vec<SocketAddr> = wanted
        .iter()
        .map(|a| match (a.port(), saved.get(&a.ip().to_string())) {
            (0, Some(port)) => SocketAddr::new(a.ip(), *port),
            _ => *a,
        })
        .collect();
    let discovery = &config.discovery;
    let endpoint = match bind(secret.clone(), relay_mode.clone(), discovery, &reuse).await {
        Ok(ep) => ep,
        Err(_) if reuse != wanted => bind(secret, relay_mode, discovery, &wanted).await?,
        Err(e) => return Err(e),
    };
    save_ports(dir, &endpoint.bound_sockets());
    let lookup = MemoryLookup::new();
    if let Ok(l) = endpoint.address_lookup() {
        l.add(lookup.clone());
        if config.mdns {
            match iroh_mdns_address_lookup::MdnsAddressLookup::builder().build(endpoint.id()) {
                Ok(mdns) => l.add(mdns),
                Err(e) => tracing::warn!("local network discovery (mDNS) is off: {e}"),
            }
        }
    }
    Ok((endpoint, lookup))
}

async fn bind(
    secret: SecretKey,
    relay: RelayMode,
    discovery: &DiscoveryChoice,
    addrs: &[SocketAddr],
) -> Result<Endpoint, NetError> {
    let mut builder = Endpoint::builder(presets::Minimal)
        .secret_key(secret)
        .relay_mode(relay)
        .clear_ip_transports();
    builder = match discovery {
        DiscoveryChoice::Disabled => builder,
        DiscoveryChoice::Default => builder
            .address_lookup(PkarrPublisher::n0_dns())
            .address_lookup(DnsAddressLookup::n0_dns()),
        DiscoveryChoice::Custom(url) => {
            let url: url::Url = url
                .parse()
                .map_err(|e| NetError::Bind(format!("discovery URL {url}: {e}")))?;
            builder
                .address_lookup(
                    PkarrPublisher::builder(url.clone()).addr_filter(AddrFilter::unfiltered()),
                )
                .address_lookup(PkarrResolver::builder(url))
        }
    };
    for addr in addrs {
        builder = builder
            .bind_addr(*addr)
            .map_err(|e| NetError::Bind(format!("{addr}: {e}")))?;
    }
    builder
        .bind()
        .await
        .map_err(|e| NetError::Bind(e.to_string()))
}

/// Addresses peers can dial, `ip:port`.
pub(super) fn addrs(endpoint: &Endpoint) -> Vec<String> {
    let mut addrs: Vec<String> = endpoint.addr().ip_addrs().map(|a| a.to_string()).collect();
    if addrs.is_empty() {
        addrs = endpoint
            .bound_sockets()
            .iter()
            .filter(|a| !a.ip().is_unspecified())
            .map(|a| a.to_string())
            .collect();
    }
    addrs.sort();
    addrs
}

const PORTS_FILE: &str = "ports.json";

fn load_ports(dir: &Path) -> HashMap<String, u16> {
    std::fs::read(dir.join(PORTS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_ports(dir: &Path, bound: &[SocketAddr]) {
    let ports: HashMap<String, u16> = bound
        .iter()
        .map(|a| (a.ip().to_string(), a.port()))
        .collect();
    if let Ok(json) = serde_json::to_vec(&ports) {
        let _ = std::fs::write(dir.join(PORTS_FILE), json);
    }
}
