//! Members find each other wherever they are: real nodes on loopback
//! whose addresses change between runs.
//!
//! - a member that moved is found through another member that learned
//!   its signed address announcement (and never through a non-member);
//! - a member no other member can tell about is found through a discovery
//!   server (`rapport relay run --discovery-server`);
//! - a node started with relays and discovery but no network comes up at
//!   once, serves the CLI, and logs nothing alarming.
//!
//! Moving between subnets while running is `tests/partition.rs`'s
//! `a_member_that_moves_subnet_is_found_again`, in network namespaces.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Node, eventually};
use serde_json::Value;

const SPACE: &str = "Field Team";
const WAIT: Duration = Duration::from_secs(30);

fn ticket(from: &Node) -> String {
    from.json(&["space", "invite", SPACE, "--role", "writer"])["ticket"]
        .as_str()
        .expect("ticket")
        .to_string()
}

fn status(n: &Node) -> Value {
    n.json(&["status"])
}

fn device(n: &Node) -> String {
    n.json(&["whoami"])["device"]
        .as_str()
        .expect("device")
        .to_string()
}

fn addrs(n: &Node) -> Vec<String> {
    status(n)["addrs"]
        .as_array()
        .expect("addrs")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

fn field(n: &Node, id: &str, name: &str) -> Value {
    n.json(&["show", id])[name].clone()
}

/// Whether `n` holds an announcement of `member` naming one of `addrs`.
fn holds_announced(n: &Node, member: &str, addrs: &[String]) -> bool {
    status(n)["members"][member]["announced"]
        .as_array()
        .is_some_and(|seen| {
            addrs
                .iter()
                .any(|x| seen.contains(&Value::from(x.as_str())))
        })
}

/// Makes the node's next start listen on a port it never used: what
/// peers remember of it is then wrong.
fn forget_port(n: &Node) {
    let _ = std::fs::remove_file(n.dir.join("ports.json"));
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn a_member_that_moved_is_found_through_another_member() {
    let (a, b, c) = (Node::new(), Node::new(), Node::new());
    let mut na = a.start(&[]);
    let mut nb = b.start(&[]);
    let mut nc = c.start(&[]);
    a.ok(&["space", "create", SPACE]);
    let id = a.json(&["company", "add", "Acme", "--space", SPACE])["id"]
        .as_str()
        .expect("id")
        .to_string();
    b.ok(&["space", "join", &ticket(&a)]);
    c.ok(&["space", "join", &ticket(&a)]);
    for n in [&b, &c] {
        assert!(
            eventually(WAIT, || n.run(&["show", &id]).status.success()),
            "Acme did not arrive"
        );
    }

    // B and C go offline; B comes back on a port nobody knows. A, still
    // up, hears B's signed announcement (B dials A, whose address B has).
    let old_b = addrs(&b);
    nb.stop();
    nc.stop();
    forget_port(&b);
    nb = b.start(&[]);
    let new_b = addrs(&b);
    assert_ne!(old_b, new_b, "B should listen elsewhere now");
    let b_id = device(&b);
    assert!(
        eventually(WAIT, || holds_announced(&a, &b_id, &new_b)),
        "A did not learn where B is now: {}",
        status(&a)["members"]
    );

    // B goes away again; C comes back knowing only B's old address,
    // catches up with A, and learns B's new one from A: only A can tell.
    nb.stop();
    nc = c.start(&[]);
    assert!(
        eventually(WAIT, || holds_announced(&c, &b_id, &new_b)),
        "C did not learn B's new address from A: {}",
        status(&c)["members"]
    );

    // With A gone, only B (back on its new port) and C can carry an edit
    // between them.
    na.stop();
    nb = b.start(&[]);
    assert_eq!(addrs(&b), new_b, "B keeps its new port");
    b.ok(&["edit", &id, "--set", "industry=Rail"]);
    let started = Instant::now();
    assert!(
        eventually(WAIT, || field(&c, &id, "industry") == "Rail"),
        "C never reached B at its new address"
    );
    eprintln!(
        "C reached B at its new address {:.1} s after the edit",
        started.elapsed().as_secs_f64()
    );
    // The path view is refreshed every 2 s, while a connection is up.
    assert!(
        eventually(WAIT, || {
            b.ok(&["edit", &id, "--set", "phone=+1 555 0100"]);
            status(&c)["members"][&b_id]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("direct"))
        }),
        "status should say how B is reached: {}",
        status(&c)["members"][&b_id]
    );
    nb.stop();
    nc.stop();
}

/// One HTTP/1.1 request to the discovery server; (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| reply[i + 4..].to_vec())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn a_member_nobody_can_tell_about_is_found_through_the_discovery_server() {
    let server = Node::new();
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let _ns = server.start_relay(&["--discovery-server", &bind]);
    let addr: SocketAddr = bind.parse().expect("addr");
    let url = format!("http://{bind}/pkarr");

    // The server checks what it is given.
    let nobody = "yryyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy";
    assert_eq!(http(addr, "GET", &format!("/pkarr/{nobody}"), b"").0, 404);
    assert_eq!(http(addr, "GET", "/pkarr/not-a-node-id", b"").0, 400);
    assert_eq!(
        http(addr, "PUT", &format!("/pkarr/{nobody}"), &[7u8; 200]).0,
        400,
        "an unsigned packet must be refused"
    );
    assert_eq!(
        http(addr, "PUT", &format!("/pkarr/{nobody}"), &[7u8; 5000]).0,
        413,
        "an oversized packet must be refused"
    );

    let (a, b) = (Node::new(), Node::new());
    let disc = ["--discovery", url.as_str()];
    let mut na = a.start(&disc);
    let mut nb = b.start(&disc);
    a.ok(&["space", "create", SPACE]);
    let id = a.json(&["company", "add", "Globex", "--space", SPACE])["id"]
        .as_str()
        .expect("id")
        .to_string();
    b.ok(&["space", "join", &ticket(&a)]);
    assert!(
        eventually(WAIT, || b.run(&["show", &id]).status.success()),
        "Globex did not arrive"
    );

    // Both move while apart: neither knows where the other is now, and
    // no third member can say. Only the discovery server knows.
    na.stop();
    nb.stop();
    forget_port(&a);
    forget_port(&b);
    na = a.start(&disc);
    nb = b.start(&disc);
    a.ok(&["edit", &id, "--set", "industry=Chemicals"]);
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(60), || field(&b, &id, "industry")
            == "Chemicals"),
        "B never found A through the discovery server"
    );
    eprintln!(
        "found through the discovery server {:.1} s after the edit",
        started.elapsed().as_secs_f64()
    );
    na.stop();
    nb.stop();
}

#[test]
fn a_node_with_relays_and_discovery_but_no_network_starts_at_once_and_quietly() {
    let n = Node::new();
    n.ok(&["company", "add", "Initech"]);
    // Nothing listens at this discovery server, and this machine reaches
    // no public relay: as offline as a laptop on a train.
    let dead = format!("http://127.0.0.1:{}/pkarr", free_port());
    let log = n.dir.with_extension("log");
    let _ = std::fs::remove_file(n.dir.join("api.json"));
    let started = Instant::now();
    let mut child = n
        .cmd()
        .args([
            "up",
            "--no-ui",
            "--no-mdns",
            "--relay",
            "default",
            "--discovery",
            &dead,
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start");
    while !n.dir.join("api.json").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the node did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let up = started.elapsed();
    eprintln!("up in {} ms, offline", up.as_millis());
    // A debug build on a loaded 2-core CI machine: generous, but far
    // below anything that waited for a relay or a lookup (seconds each).
    assert!(up < Duration::from_secs(3), "took {up:?} to start offline");
    let s = status(&n);
    assert_eq!(s["relay"], "default");
    assert_eq!(s["discovery"], dead);
    n.ok(&["company", "add", "Umbrella"]);
    assert_eq!(
        n.json(&["list", "company"]).as_array().map(Vec::len),
        Some(2)
    );
    std::thread::sleep(Duration::from_secs(3));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let alarming: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    assert!(
        alarming.is_empty(),
        "an offline start should log nothing alarming:\n{}",
        alarming.join("\n")
    );
}
