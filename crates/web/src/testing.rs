//! Page tests: a real node (demo records loaded) and its UI on loopback,
//! logged in, with a plain HTTP/1.1 client for GETs and form posts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rapport_node::net::{NetConfig, Node};
use rapport_node::{OpenMode, Repo};

use crate::Ui;

/// What a request got back.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) struct TestUi {
    pub ui: Ui,
    pub node: Node,
    pub cookie: String,
    _dir: tempfile::TempDir,
}

impl TestUi {
    /// A node with the demo records, its UI, and a logged-in session.
    pub async fn start() -> TestUi {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Arc::new(Repo::open(dir.path(), OpenMode::Create).expect("repo"));
        repo.set_identity(Some("Dana Sales".into()), Some("Acme Partners".into()))
            .expect("identity");
        rapport_node::demo::seed(&repo).expect("demo");
        let config = NetConfig {
            bind: vec!["127.0.0.1:0".parse().expect("addr")],
            mdns: false,
            sync_interval: None,
            ..NetConfig::default()
        };
        let node = Node::start(repo, config).await.expect("node");
        let ui = Ui::start(
            rapport_node::ops::Ops::running(node.clone(), None),
            Some("127.0.0.1:0".parse().expect("addr")),
            "test-token".into(),
        )
        .await
        .expect("ui");
        let mut t = TestUi {
            ui,
            node,
            cookie: String::new(),
            _dir: dir,
        };
        let link = t.ui.login_link();
        let path = link.trim_start_matches(&t.ui.url).to_string();
        let answer = t.get(&path).await;
        let set = answer.header("set-cookie").expect("login sets a cookie");
        t.cookie = set.split(';').next().unwrap_or("").to_string();
        // The search index reads the store in the background.
        for _ in 0..200 {
            if t.ui.live.ready() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        t
    }

    /// The same UI, seen by a browser that never logged in.
    pub fn logged_out(self) -> TestUi {
        TestUi {
            cookie: String::new(),
            ..self
        }
    }

    pub fn repo(&self) -> &Arc<Repo> {
        self.node.repo()
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }

    /// Posts `fields` as an HTML form would.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send("POST", path, Some(body)).await
    }

    async fn send(&self, method: &str, path: &str, body: Option<String>) -> Answer {
        let addr = self.ui.addr;
        let cookie = self.cookie.clone();
        let (method, path) = (method.to_string(), path.to_string());
        tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(addr).expect("connect");
            let body = body.unwrap_or_default();
            let mut head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
                body.len()
            );
            if method == "POST" {
                head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
                head.push_str(&format!("Origin: http://{addr}\r\n"));
            }
            if !cookie.is_empty() {
                head.push_str(&format!("Cookie: {cookie}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).expect("write");
            stream.write_all(body.as_bytes()).expect("write");
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).expect("read");
            parse(&raw)
        })
        .await
        .expect("request task")
    }
}

fn form_encode(s: &str) -> String {
    crate::page::url_encode(s).replace("%20", "+")
}

fn parse(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("http head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        data = &data[end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_search_and_pages_need_the_session() {
    let t = TestUi::start().await;
    let found = t.get("/search?format=json&q=acme").await;
    assert_eq!(found.status, 200);
    assert!(found.body.contains("Acme Corporation"), "{}", found.body);
    let page = t.get("/search?q=ann").await;
    assert!(page.body.contains("Ann Baker"), "{}", page.body);

    let stranger = t.logged_out();
    let refused = stranger.get("/search?q=acme").await;
    assert_eq!(refused.status, 303, "sent to the login page");
    assert_eq!(
        refused.header("location"),
        Some("/login?next=/search%3Fq%3Dacme")
    );
    let bad = stranger.post("/login", &[("token", "wrong")]).await;
    assert_eq!(bad.status, 401);
    assert!(bad.body.contains("not this node"), "{}", bad.body);
    let good = stranger.post("/login", &[("token", "test-token")]).await;
    assert_eq!(good.status, 303);
    assert!(good.header("set-cookie").is_some());
}

/// Another web site the user visits may neither reach the UI under its own
/// host name (DNS rebinding) nor post a form to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sites_are_refused() {
    let t = TestUi::start().await;
    let (addr, cookie) = (t.ui.addr, t.cookie.clone());
    let answers = tokio::task::spawn_blocking(move || {
        let raw = |head: String| {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream.write_all(head.as_bytes()).expect("write");
            let mut out = Vec::new();
            stream.read_to_end(&mut out).expect("read");
            parse(&out)
        };
        let rebound = raw(format!(
            "GET /k/company HTTP/1.1\r\nHost: evil.example:{}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
            addr.port()
        ));
        let forged = raw(format!(
            "POST /spaces/create HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nCookie: {cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\nConnection: close\r\n\r\nname=Evil"
        ));
        (rebound.status, forged.status)
    })
    .await
    .expect("task");
    assert_eq!(answers, (421, 403));
    let repo = t.repo().clone();
    let spaces = tokio::task::spawn_blocking(move || repo.spaces().expect("spaces"))
        .await
        .expect("task");
    assert!(
        spaces.iter().all(|s| s.name != "Evil"),
        "nothing was created"
    );
}
