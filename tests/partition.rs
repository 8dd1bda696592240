//! Real `rapport up` processes, each in its own Linux network namespace,
//! wired through a bridge in a fourth one: a space shared by tickets, a
//! network partition (one node's link down) with edits on both sides,
//! then heavy packet loss on that link, then healing; all three nodes must
//! end with the same records and values, the same-field conflict resolved
//! the same way everywhere.
//!
//! A second test, `a_member_that_moves_subnet_is_found_again`, puts each
//! node on a subnet of its own behind a router namespace, and moves one
//! node to a new subnet while it runs: the others must learn its new
//! address (its signed announcement) and converge with it again.
//!
//! Needs root and iproute2 (`ip netns`); without them the test says so on
//! stderr and passes as skipped. Loss is injected with `tc netem` where the
//! kernel has it, else nftables (`nft`), else iptables; with none of them
//! that phase is skipped and the rest still runs. `RAPPORT_REQUIRE_NETNS=1`
//! (set by `.ci/run` as root) turns either skip into a failure.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Node, eventually, rapport_bin};
use serde_json::Value;

const SPACE: &str = "Partition Lab";
/// Rounds of edits on every node while C is cut off, and under loss.
const PARTITION_ROUNDS: usize = 4;
const LOSS_ROUNDS: usize = 2;
/// Loss in each direction on C's link during the loss phase (percent).
const LOSS_PERCENT: u32 = 30;
/// How long C may take to catch up under loss before the link is healed.
const LOSS_PHASE: Duration = Duration::from_secs(15);
/// How long C's link stays down: past iroh's path (15 s) and connection
/// (30 s) idle timeouts, so that healing needs new connections.
/// `RAPPORT_PARTITION_SECS` overrides it.
const PARTITION_HOLD: Duration = Duration::from_secs(35);
const WAIT: Duration = Duration::from_secs(20);
const HEAL_TIMEOUT: Duration = Duration::from_secs(45);

/// Runs a command; `Err` carries what it printed on failure.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// How packets are dropped on C's link during the loss phase.
#[derive(Clone, Copy, Debug)]
enum Loss {
    Netem,
    Nftables,
    Iptables,
}

/// The namespaces, links and node processes of one run. Dropping it (at
/// the end, or while a failed assertion unwinds) kills the nodes and
/// deletes the namespaces, which takes their links with them.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    nodes: Vec<Child>,
}

impl Lab {
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn add_ns(&mut self, name: &str) -> Result<String, String> {
        let ns = self.ns(name);
        run("ip", &["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        Ok(ns)
    }

    /// A bridge namespace and one namespace per node with a veth link into
    /// the bridge; returns each node's namespace and address.
    fn build(&mut self, names: &[&str], subnet: &str) -> Result<Vec<(String, String)>, String> {
        let br = self.add_ns("br")?;
        run("ip", &["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &br, "link", "set", "br0", "up"])?;
        let mut out = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let ns = self.add_ns(name)?;
            let port = format!("v{name}");
            let ip = format!("{subnet}.{}", i + 1);
            run(
                "ip",
                &[
                    "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port,
                    "netns", &br,
                ],
            )?;
            run("ip", &["-n", &br, "link", "set", &port, "master", "br0"])?;
            run("ip", &["-n", &br, "link", "set", &port, "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            )?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            out.push((ns, ip));
        }
        Ok(out)
    }

    /// A router namespace and one namespace per node, each node on a /24
    /// of its own (`{base}.{i}.1`, gateway `{base}.{i}.254` in the router);
    /// returns the router's namespace, then each node's namespace and
    /// address.
    fn build_routed(
        &mut self,
        names: &[&str],
        base: &str,
    ) -> Result<(String, Vec<(String, String)>), String> {
        let rt = self.add_ns("rt")?;
        run("ip", &["-n", &rt, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &[
                "netns",
                "exec",
                &rt,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
            ],
        )?;
        let mut out = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let ns = self.add_ns(name)?;
            let port = format!("v{name}");
            let net = format!("{base}.{}", i + 1);
            run(
                "ip",
                &[
                    "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port,
                    "netns", &rt,
                ],
            )?;
            run(
                "ip",
                &[
                    "-n",
                    &rt,
                    "addr",
                    "add",
                    &format!("{net}.254/24"),
                    "dev",
                    &port,
                ],
            )?;
            run("ip", &["-n", &rt, "link", "set", &port, "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{net}.1/24"),
                    "dev",
                    "eth0",
                ],
            )?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("{net}.254"),
                ],
            )?;
            out.push((ns, format!("{net}.1")));
        }
        Ok((rt, out))
    }

    /// Moves the node in `ns` (router port `port`) to the subnet `net`:
    /// its old address goes, `{net}.1` comes, routed through the router.
    fn move_node(&self, ns: &str, port: &str, net: &str) -> Result<(), String> {
        let rt = self.ns("rt");
        run(
            "ip",
            &[
                "-n",
                &rt,
                "addr",
                "add",
                &format!("{net}.254/24"),
                "dev",
                port,
            ],
        )?;
        run("ip", &["-n", ns, "addr", "flush", "dev", "eth0"])?;
        run(
            "ip",
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{net}.1/24"),
                "dev",
                "eth0",
            ],
        )?;
        run(
            "ip",
            &[
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                &format!("{net}.254"),
            ],
        )
    }

    /// Drops `percent` of the packets each way on `ns`'s `eth0` (and, for
    /// netem, which shapes egress only, on its bridge port `port` too).
    fn add_loss(&self, ns: &str, port: &str, percent: u32) -> Result<Loss, String> {
        let br = self.ns("br");
        let p = format!("{percent}%");
        let netem = run(
            "tc",
            &[
                "-n", ns, "qdisc", "add", "dev", "eth0", "root", "netem", "loss", &p,
            ],
        )
        .and_then(|()| {
            run(
                "tc",
                &[
                    "-n", &br, "qdisc", "add", "dev", port, "root", "netem", "loss", &p,
                ],
            )
        });
        let netem_err = match netem {
            Ok(()) => return Ok(Loss::Netem),
            Err(e) => {
                let _ = run("tc", &["-n", ns, "qdisc", "del", "dev", "eth0", "root"]);
                e
            }
        };
        let rules = format!(
            "table inet rapport_loss {{\n\
             chain in {{ type filter hook input priority 0; policy accept; iifname \"eth0\" numgen random mod 100 < {percent} drop; }}\n\
             chain out {{ type filter hook output priority 0; policy accept; oifname \"eth0\" numgen random mod 100 < {percent} drop; }}\n\
             }}\n"
        );
        let nft = (|| {
            use std::io::Write;
            let mut child = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("nft: {e}"))?;
            child
                .stdin
                .take()
                .expect("nft's stdin")
                .write_all(rules.as_bytes())
                .map_err(|e| format!("nft: {e}"))?;
            let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "nft failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        })();
        let nft_err = match nft {
            Ok(()) => return Ok(Loss::Nftables),
            Err(e) => e,
        };
        let probability = format!("{:.2}", f64::from(percent) / 100.0);
        let ipt = |chain: &str, dir: &str| {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    ns,
                    "iptables",
                    "-A",
                    chain,
                    dir,
                    "eth0",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability,
                    "-j",
                    "DROP",
                ],
            )
        };
        match ipt("INPUT", "-i").and_then(|()| ipt("OUTPUT", "-o")) {
            Ok(()) => Ok(Loss::Iptables),
            Err(ipt_err) => {
                let _ = run("ip", &["netns", "exec", ns, "iptables", "-F"]);
                Err(format!(
                    "netem: {netem_err}; nftables: {nft_err}; iptables: {ipt_err}"
                ))
            }
        }
    }

    fn remove_loss(&self, loss: Loss, ns: &str, port: &str) -> Result<(), String> {
        match loss {
            Loss::Netem => {
                run("tc", &["-n", ns, "qdisc", "del", "dev", "eth0", "root"])?;
                run(
                    "tc",
                    &["-n", &self.ns("br"), "qdisc", "del", "dev", port, "root"],
                )
            }
            Loss::Nftables => run(
                "ip",
                &[
                    "netns",
                    "exec",
                    ns,
                    "nft",
                    "delete",
                    "table",
                    "inet",
                    "rapport_loss",
                ],
            ),
            Loss::Iptables => run("ip", &["netns", "exec", ns, "iptables", "-F"]),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let started = Instant::now();
        for child in &mut self.nodes {
            while started.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("partition: teardown: {e}");
            }
        }
    }
}

/// A node's data directory, the namespace it runs in and its address.
struct Peer {
    name: &'static str,
    ns: String,
    ip: String,
    dir: PathBuf,
}

impl Peer {
    /// `rapport` inside the node's namespace, where its local API (on the
    /// namespace's loopback) answers.
    fn cmd(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, rapport_bin(), "--data-dir"])
            .arg(&self.dir)
            .env_remove("RAPPORT_DATA_DIR")
            .env("RAPPORT_RELAY", "none")
            .env("RAPPORT_DISCOVERY", "none");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run rapport")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{}: rapport {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{}: rapport {args:?}: {e}: {out}", self.name))
    }

    fn log(&self) -> PathBuf {
        self.dir
            .parent()
            .expect("the data directory's parent")
            .join("up.log")
    }

    /// Starts `rapport up` in the namespace, bound to its address. The
    /// caller hands the process to the [`Lab`] at once, then waits for it
    /// with [`Peer::wait_ready`].
    fn spawn(&self) -> Child {
        self.spawn_on(&format!("{}:0", self.ip), &[])
    }

    /// Starts `rapport up` bound to `bind` (`0.0.0.0:0` for a node whose
    /// address changes while it runs), with `extra` arguments.
    fn spawn_on(&self, bind: &str, extra: &[&str]) -> Child {
        let log = std::fs::File::create(self.log()).expect("log file");
        self.cmd()
            .args(["up", "--no-mdns", "--sync-interval", "1", "--bind", bind])
            .args(extra)
            .env("RAPPORT_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rapport up")
    }

    /// Waits until the node's local API is up.
    fn wait_ready(&self) {
        let started = Instant::now();
        while !self.dir.join("api.json").exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{}: the node did not start within 30 s",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every record, deleted ones included: a snapshot to compare.
    fn snapshot(&self) -> Value {
        self.json(&["export"])
    }

    fn names(&self) -> BTreeSet<String> {
        self.snapshot()
            .as_array()
            .expect("an array of records")
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect()
    }

    fn show(&self, record: &str) -> Value {
        self.json(&["show", record])
    }

    /// One round of edits: on the shared record, a field every node sets
    /// (to `NAME-ROUND`) and this node's own field; and a new record.
    /// Returns the number of edits.
    fn edit_round(&self, id: &str, shared: &str, own: (&str, &str), round: &str) -> usize {
        self.ok(&[
            "edit",
            id,
            "--set",
            &format!("{shared}={}-{round}", self.name),
            "--set",
            &format!("{}={}", own.0, own.1),
        ]);
        self.ok(&[
            "company",
            "add",
            &format!("{}-{round} Co", self.name),
            "--space",
            SPACE,
        ]);
        2
    }

    fn tail_log(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn phase(start: Instant, what: &str) {
    eprintln!(
        "partition: [{:5.1} s] {what}",
        start.elapsed().as_secs_f64()
    );
}

/// A unique suffix for this run's namespaces and a random /24 in 10/8.
fn run_tag() -> (String, String) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut rng = common::Rng(u64::from(nanos) ^ (u64::from(std::process::id()) << 32));
    let r = rng.next();
    let prefix = format!("rpt{}-{:04x}", std::process::id(), r & 0xffff);
    let subnet = format!("10.{}.{}", 100 + (r >> 16) % 100, (r >> 24) % 250);
    (prefix, subnet)
}

fn partition_hold() -> Duration {
    std::env::var("RAPPORT_PARTITION_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(PARTITION_HOLD, Duration::from_secs)
}

fn field_values(p: &Peer, id: &str, field: &str) -> Value {
    p.show(id)[field].clone()
}

/// A lab that could not be built: a failure when required, else a skip
/// (`None`), said on stderr.
fn lab_or_skip<T>(setup: Result<T, String>, test: &str) -> Result<Option<T>, String> {
    match setup {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let why = format!("cannot create network namespaces (need root and iproute2): {e}");
            if required() {
                return Err(format!("{why} (RAPPORT_REQUIRE_NETNS is set)"));
            }
            eprintln!("{test} test skipped: {why}");
            Ok(None)
        }
    }
}

/// A, B and C on the first three spots (namespace, address), with the
/// first three homes' data directories.
fn three_peers(spots: Vec<(String, String)>, homes: &[Node]) -> (Peer, Peer, Peer) {
    let mut peers =
        spots
            .into_iter()
            .zip(homes)
            .zip(["A", "B", "C"])
            .map(|(((ns, ip), home), name)| Peer {
                name,
                ns,
                ip,
                dir: home.dir.clone(),
            });
    let mut next = || peers.next().expect("three spots and homes");
    (next(), next(), next())
}

/// Whether a phase this machine cannot run is a failure rather than a
/// skip: `RAPPORT_REQUIRE_NETNS` set (to anything but `0`).
fn required() -> bool {
    std::env::var_os("RAPPORT_REQUIRE_NETNS").is_some_and(|v| v != "0")
}

#[test]
fn partition_loss_and_heal_converge() -> Result<(), String> {
    let start = Instant::now();
    // Data directories first: dropped last, after the nodes are stopped.
    let homes = [Node::new(), Node::new(), Node::new()];
    let (prefix, subnet) = run_tag();
    let mut lab = Lab {
        prefix,
        namespaces: Vec::new(),
        nodes: Vec::new(),
    };
    let Some(spots) = lab_or_skip(lab.build(&["a", "b", "c"], &subnet), "partition")? else {
        return Ok(());
    };
    let (a, b, c) = three_peers(spots, &homes);
    phase(start, &format!("namespaces up ({}.0/24)", subnet));

    // 1. Three nodes; A shares a space with B and C by tickets.
    for p in [&a, &b, &c] {
        p.ok(&["init", "--name", p.name]);
        lab.nodes.push(p.spawn());
        p.wait_ready();
    }
    phase(start, "three nodes started");
    a.ok(&["space", "create", SPACE]);
    let acme = a.json(&["company", "add", "Acme", "--space", SPACE]);
    let id = acme["id"].as_str().expect("id").to_string();
    for p in [&b, &c] {
        let ticket = a.json(&["space", "invite", SPACE, "--role", "writer"])["ticket"]
            .as_str()
            .expect("ticket")
            .to_string();
        let decoded = rapport_proto::wire::Ticket::decode(&ticket).expect("a valid ticket");
        assert!(
            !decoded.addrs.is_empty()
                && decoded
                    .addrs
                    .iter()
                    .all(|addr| addr.starts_with(&format!("{}:", a.ip))),
            "the ticket must carry A's namespace address {}, not {:?}",
            a.ip,
            decoded.addrs
        );
        p.ok(&["space", "join", &ticket]);
    }
    for p in [&b, &c] {
        assert!(
            eventually(WAIT, || p.run(&["show", &id]).status.success()),
            "{}: Acme did not arrive",
            p.name
        );
    }
    c.ok(&["edit", &id, "--set", "industry=Steel"]);
    for p in [&a, &b] {
        assert!(
            eventually(WAIT, || field_values(p, &id, "industry") == "Steel"),
            "{}: C's live edit did not arrive",
            p.name
        );
    }
    phase(start, "joined by tickets; a live edit reached everyone");

    // 2. Partition: C's link goes down; everyone keeps editing, half of
    // the rounds at once, half after the link has been down longer than
    // iroh's idle timeouts (its connections to C are gone by then).
    run("ip", &["-n", &c.ns, "link", "set", "eth0", "down"]).expect("link down");
    let cut = Instant::now();
    phase(start, "partition: C's link is down");
    let hold = partition_hold();
    let last = PARTITION_ROUNDS - 1;
    let mut changes = 0;
    let mut ab_names = BTreeSet::new();
    for rounds in [
        0..PARTITION_ROUNDS / 2,
        PARTITION_ROUNDS / 2..PARTITION_ROUNDS,
    ] {
        if rounds.start > 0 {
            std::thread::sleep(hold.saturating_sub(cut.elapsed()));
        }
        let edited = Instant::now();
        for round in rounds.clone() {
            let r = format!("p{round}");
            changes += a.edit_round(&id, "owner", ("domain", &format!("a{round}.example")), &r);
            changes += b.edit_round(&id, "owner", ("address", &format!("{round} B Street")), &r);
            changes += c.edit_round(&id, "owner", ("phone", &format!("+1 555 010{round}")), &r);
            ab_names.extend([format!("A-p{round} Co"), format!("B-p{round} Co")]);
        }
        let ab_converged = eventually(WAIT, || {
            let (sa, sb) = (a.snapshot(), b.snapshot());
            sa == sb && ab_names.is_subset(&a.names())
        });
        assert!(ab_converged, "A and B did not converge while C was cut off");
        phase(
            start,
            &format!(
                "partition: rounds {rounds:?} ({changes} changes so far) made; A and B converged {:.1} s after the first edit, {:.1} s into the partition",
                edited.elapsed().as_secs_f64(),
                cut.elapsed().as_secs_f64()
            ),
        );
    }
    // C must still see none of it, nor they anything of C's.
    let c_names = c.names();
    assert!(
        c_names.is_disjoint(&ab_names),
        "C saw A's or B's records through the partition: {c_names:?}"
    );
    let vc = c.show(&id);
    assert_eq!(vc["owner"], format!("C-p{last}").as_str());
    assert!(vc["domain"].is_null() && vc["address"].is_null(), "{vc}");
    assert!(vc["conflicts"]["owner"].is_null(), "{vc}");
    let va = a.show(&id);
    assert!(va["phone"].is_null(), "A saw C's edit: {va}");
    assert!(
        !a.names().contains(&format!("C-p{last} Co")),
        "A saw C's record"
    );
    phase(
        start,
        "partition: C sees none of A's and B's edits, nor they C's",
    );

    // 3. Heavy loss: the link comes back dropping packets both ways; the
    // nodes keep editing. C catching up under loss is measured, not
    // required.
    run("ip", &["-n", &c.ns, "link", "set", "eth0", "up"]).expect("link up");
    let loss = match lab.add_loss(&c.ns, "vc", LOSS_PERCENT) {
        Ok(loss) => {
            phase(
                start,
                &format!("loss: C's link is up, dropping {LOSS_PERCENT}% each way ({loss:?})"),
            );
            Some(loss)
        }
        Err(e) => {
            assert!(
                !required(),
                "no way to drop packets here (RAPPORT_REQUIRE_NETNS is set): {e}"
            );
            eprintln!("partition: loss phase skipped: no way to drop packets here ({e})");
            None
        }
    };
    if let Some(loss) = loss {
        let loss_start = Instant::now();
        let mut loss_changes = 0;
        for round in 0..LOSS_ROUNDS {
            let r = format!("l{round}");
            loss_changes += a.edit_round(
                &id,
                "industry",
                ("website", &format!("https://a{round}.example")),
                &r,
            );
            loss_changes += b.edit_round(&id, "industry", ("tags", &format!("b{round}")), &r);
            loss_changes += c.edit_round(
                &id,
                "industry",
                ("phone", &format!("+1 555 011{round}")),
                &r,
            );
        }
        changes += loss_changes;
        phase(
            start,
            &format!("loss: {loss_changes} changes made under loss"),
        );
        let mut want = ab_names.clone();
        want.extend((0..LOSS_ROUNDS).flat_map(|i| [format!("A-l{i} Co"), format!("B-l{i} Co")]));
        let caught_up = eventually(LOSS_PHASE, || want.is_subset(&c.names()));
        let seen = c.names().intersection(&want).count();
        phase(
            start,
            &format!(
                "loss: after {:.1} s under loss C has {seen} of the {} records A and B made (caught up: {caught_up})",
                loss_start.elapsed().as_secs_f64(),
                want.len()
            ),
        );
        lab.remove_loss(loss, &c.ns, "vc").expect("remove loss");
    }

    // 4. Heal: everything everywhere, the same values and conflict.
    let healed = Instant::now();
    phase(start, "heal: C's link is clean");
    let mut all_names = ab_names.clone();
    all_names.extend((0..PARTITION_ROUNDS).map(|i| format!("C-p{i} Co")));
    if loss.is_some() {
        for i in 0..LOSS_ROUNDS {
            for n in ["A", "B", "C"] {
                all_names.insert(format!("{n}-l{i} Co"));
            }
        }
    }
    let converged = eventually(HEAL_TIMEOUT, || {
        let s = [a.snapshot(), b.snapshot(), c.snapshot()];
        s[0] == s[1] && s[1] == s[2] && all_names.is_subset(&a.names())
    });
    if !converged {
        for p in [&a, &b, &c] {
            eprintln!(
                "partition: {} has {:?}\n--- its log:\n{}",
                p.name,
                p.names(),
                p.tail_log()
            );
        }
    }
    assert!(
        converged,
        "the three nodes did not converge within {HEAL_TIMEOUT:?} of healing"
    );
    phase(
        start,
        &format!(
            "heal: all three converged {:.1} s after healing",
            healed.elapsed().as_secs_f64()
        ),
    );
    let views = [a.show(&id), b.show(&id), c.show(&id)];
    assert_eq!(views[0], views[1]);
    assert_eq!(views[1], views[2]);
    let v = &views[0];
    assert_eq!(v["domain"], format!("a{last}.example").as_str());
    assert_eq!(v["address"], format!("{last} B Street").as_str());
    if loss.is_some() {
        let l = LOSS_ROUNDS - 1;
        assert_eq!(v["phone"], format!("+1 555 011{l}").as_str());
        assert_eq!(v["website"], format!("https://a{l}.example").as_str());
        assert_eq!(v["tags"], serde_json::json!([format!("b{l}")]));
    } else {
        assert_eq!(v["phone"], format!("+1 555 010{last}").as_str());
    }
    // The owner was set on both sides of the partition: a conflict, the
    // same winner and the same alternatives everywhere, C's last value
    // among them.
    let owners = v["conflicts"]["owner"]
        .as_array()
        .unwrap_or_else(|| panic!("a visible conflict on owner: {v}"));
    assert!(owners.len() >= 2, "{v}");
    assert!(
        owners.contains(&Value::from(format!("C-p{last}"))),
        "C's last owner is one side of the conflict: {v}"
    );
    eprintln!("partition: Acme after healing: {v}");
    phase(
        start,
        &format!("done: {changes} changes made during the partition and under loss"),
    );
    Ok(())
}

/// Whether `p`'s status says `member` announced an address starting
/// with `prefix`.
fn announced(p: &Peer, member: &str, prefix: &str) -> bool {
    p.json(&["status"])["members"][member]["announced"]
        .as_array()
        .is_some_and(|a| {
            a.iter()
                .any(|x| x.as_str().is_some_and(|x| x.starts_with(prefix)))
        })
}

#[test]
fn a_member_that_moves_subnet_is_found_again() -> Result<(), String> {
    let start = Instant::now();
    let homes = [Node::new(), Node::new(), Node::new(), Node::new()];
    let (prefix, subnet) = run_tag();
    // Two octets of the run's /24: each node gets a /24 of its own in it.
    let base = subnet
        .rsplit_once('.')
        .map_or(subnet.clone(), |(b, _)| b.to_string());
    let mut lab = Lab {
        prefix: format!("{prefix}m"),
        namespaces: Vec::new(),
        nodes: Vec::new(),
    };
    let Some((rt, spots)) = lab_or_skip(lab.build_routed(&["a", "b", "c"], &base), "roaming")?
    else {
        return Ok(());
    };
    let (a, b, c) = three_peers(spots, &homes);
    // The discovery server runs on the router, where every subnet can
    // reach it; every node publishes there.
    let server = Peer {
        name: "discovery",
        ns: rt.clone(),
        ip: format!("{base}.1.254"),
        dir: homes[3].dir.clone(),
    };
    let port = 30_000 + (std::process::id() % 20_000) as u16;
    lab.nodes.push(
        server
            .cmd()
            .args([
                "relay",
                "run",
                "--no-mdns",
                "--bind",
                "127.0.0.1:0",
                "--discovery-server",
            ])
            .arg(format!("0.0.0.0:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start the discovery server: {e}"))?,
    );
    server.wait_ready();
    let discovery = format!("http://{base}.1.254:{port}/pkarr");
    phase(
        start,
        &format!("roaming: three subnets of {base}.0.0/16 behind a router"),
    );

    // B binds every interface: its address may change under it.
    for (p, bind) in [(&a, format!("{}:0", a.ip)), (&b, "0.0.0.0:0".into())] {
        p.ok(&["init", "--name", p.name]);
        lab.nodes
            .push(p.spawn_on(&bind, &["--discovery", &discovery]));
        p.wait_ready();
    }
    // C starts with no network at all, relays and discovery configured:
    // it must come up at once and work, and connect once its link is up.
    c.ok(&["init", "--name", c.name]);
    run("ip", &["-n", &c.ns, "link", "set", "eth0", "down"])?;
    let offline = Instant::now();
    lab.nodes.push(c.spawn_on(
        &format!("{}:0", c.ip),
        &["--discovery", &discovery, "--relay", "default"],
    ));
    c.wait_ready();
    let up = offline.elapsed();
    // Generous for a debug build on a loaded machine; a node that waited
    // for a relay or a lookup would take many seconds.
    assert!(
        up < Duration::from_secs(5),
        "C took {up:?} to start offline"
    );
    c.ok(&["company", "add", "Offline Co"]);
    phase(
        start,
        &format!("roaming: C up in {} ms with no network", up.as_millis()),
    );
    run("ip", &["-n", &c.ns, "link", "set", "eth0", "up"])?;
    run(
        "ip",
        &[
            "-n",
            &c.ns,
            "route",
            "add",
            "default",
            "via",
            &format!("{base}.3.254"),
        ],
    )?;
    a.ok(&["space", "create", SPACE]);
    let id = a.json(&["company", "add", "Acme", "--space", SPACE])["id"]
        .as_str()
        .expect("id")
        .to_string();
    for p in [&b, &c] {
        let ticket = a.json(&["space", "invite", SPACE, "--role", "writer"])["ticket"]
            .as_str()
            .expect("ticket")
            .to_string();
        p.ok(&["space", "join", &ticket]);
        assert!(
            eventually(WAIT, || p.run(&["show", &id]).status.success()),
            "{}: Acme did not arrive",
            p.name
        );
    }
    let b_device = b.json(&["whoami"])["device"]
        .as_str()
        .expect("device")
        .to_string();
    let old = format!("{}:", b.ip);
    for p in [&a, &c] {
        assert!(
            eventually(WAIT, || announced(p, &b_device, &old)),
            "{}: B's first announcement did not arrive",
            p.name
        );
    }
    phase(start, "roaming: joined; A and C hold B's announced address");

    // B moves to a new subnet while it runs.
    let new_net = format!("{base}.9");
    lab.move_node(&b.ns, "vb", &new_net)?;
    let moved = Instant::now();
    let new = format!("{new_net}.1:");
    for p in [&a, &c] {
        let learned = eventually(WAIT, || announced(p, &b_device, &new));
        if !learned {
            eprintln!("--- B's log:\n{}", b.tail_log());
        }
        assert!(learned, "{}: never learned B's new address", p.name);
    }
    phase(
        start,
        &format!(
            "roaming: B moved to {new_net}.1; A and C learned it {:.1} s later",
            moved.elapsed().as_secs_f64()
        ),
    );

    // And they converge with it: edits both ways.
    a.ok(&["edit", &id, "--set", "industry=Rail"]);
    b.ok(&["edit", &id, "--set", "phone=+1 555 0199"]);
    let converged = eventually(WAIT, || {
        [&a, &b, &c].iter().all(|p| {
            let v = p.show(&id);
            v["industry"] == "Rail" && v["phone"] == "+1 555 0199"
        })
    });
    if !converged {
        for p in [&a, &b, &c] {
            eprintln!("--- {}'s log:\n{}", p.name, p.tail_log());
        }
    }
    assert!(converged, "the three nodes did not converge after B moved");
    phase(
        start,
        &format!(
            "roaming: converged {:.1} s after B moved",
            moved.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}
