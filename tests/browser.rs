//! The web UI in a real browser: two real nodes on loopback share a space,
//! and headless Chromium (driven by `tests/browser/e2e.mjs` through
//! playwright-core) logs in to node A, fills in forms, searches, drags a
//! deal across the pipeline board, checks accessibility with axe-core and
//! the phone layout, watches an edit made on node B appear on A's open
//! page without a reload, and settles a real conflict (both nodes wrote a
//! field while apart) by keeping one value, which B then shows too.
//!
//! Needs Chromium (`apt-get install chromium`, or `RAPPORT_CHROMIUM=PATH`),
//! Node.js and `npm ci --prefix tests/browser`. Without them the test is
//! skipped, unless `RAPPORT_REQUIRE_BROWSER=1` (CI) makes it fail.
//! `RAPPORT_SCREENSHOTS=DIR` saves screenshots of the main pages into DIR.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Node, eventually};

const SPACE: &str = "Acme ↔ Northwind";
const SHARED_COMPANY: &str = "Acme";
/// The name of node A's user, the owner of "my work".
const ME: &str = "Ada Admin";
const WAIT: Duration = Duration::from_secs(30);
/// The script stops itself after 4 minutes; this is the backstop.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(300);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli crate sits in the workspace")
        .to_path_buf()
}

fn chromium() -> PathBuf {
    std::env::var_os("RAPPORT_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What is missing to run the browser test, as instructions.
fn missing_prerequisites(root: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let browser = chromium();
    if !browser.exists() {
        missing.push(format!(
            "Chromium at {} (apt-get install chromium, or set RAPPORT_CHROMIUM)",
            browser.display()
        ));
    }
    let node_ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_ok {
        missing.push("Node.js 20 or newer (apt-get install nodejs npm)".into());
    }
    let modules = root.join("tests/browser/node_modules");
    for package in ["playwright-core", "axe-core"] {
        if !modules.join(package).join("package.json").exists() {
            missing.push(format!(
                "{} (npm ci --prefix tests/browser)",
                modules.join(package).display()
            ));
        }
    }
    missing
}

fn invite(from: &Node) -> String {
    from.json(&["space", "invite", SPACE, "--role", "writer"])["ticket"]
        .as_str()
        .expect("ticket")
        .to_string()
}

/// Kills the script's whole process group (node and its Chromium) if the
/// test ends before the script does.
struct Script {
    child: std::process::Child,
}

impl Script {
    fn kill_group(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill_group();
        }
    }
}

#[test]
fn the_web_ui_works_in_a_real_browser() {
    let root = workspace_root();
    let missing = missing_prerequisites(&root);
    if !missing.is_empty() {
        let list = missing.join("; ");
        if std::env::var("RAPPORT_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!("RAPPORT_REQUIRE_BROWSER=1 but the browser test cannot run: missing {list}");
        }
        println!("browser test skipped: missing {list}");
        return;
    }

    // Two nodes sharing a space with a company in it, as tests/sync.rs does.
    let (a, b) = (Node::new(), Node::new());
    a.ok(&["init", "--name", ME]);
    let _na = a.start(&["--ui-bind", "127.0.0.1:0"]);
    let mut nb = b.start(&["--ui-bind", "127.0.0.1:0"]);
    a.ok(&["space", "create", SPACE]);
    let acme = a.json(&["company", "add", SHARED_COMPANY, "--space", SPACE]);
    let acme_id = acme["id"].as_str().expect("id").to_string();
    b.ok(&["space", "join", &invite(&a)]);
    assert!(
        eventually(WAIT, || b.run(&["show", &acme_id]).status.success()),
        "the shared company did not reach node B"
    );

    // A real conflict for the script to settle: both nodes write the
    // company's industry while B is offline, then B comes back and syncs.
    nb.stop();
    b.ok(&["edit", &acme_id, "--set", "industry=Mining"]);
    a.ok(&["edit", &acme_id, "--set", "industry=Steel"]);
    let _nb = b.start(&["--ui-bind", "127.0.0.1:0"]);
    let torn = |n: &Node| {
        n.json(&["show", &acme_id])["conflicts"]["industry"]
            .as_array()
            .is_some_and(|values| values.len() == 2)
    };
    assert!(
        eventually(WAIT, || torn(&a) && torn(&b)),
        "the two industries did not meet as a conflict on both nodes"
    );

    // Something to do on "My work": a task due today and an open ticket.
    a.ok(&[
        "activity",
        "add",
        "task",
        "--about",
        &acme_id,
        "--subject",
        "Send the Acme proposal",
        "--due",
        "today",
        "--owner",
        ME,
        "--space",
        SPACE,
    ]);
    a.ok(&[
        "ticket",
        "add",
        "Invoice address is wrong",
        "--about",
        &acme_id,
        "--priority",
        "high",
        "--owner",
        ME,
        "--space",
        SPACE,
    ]);

    // The calendar: this week's Monday, a meeting and a call that
    // overlaps it; a meeting in ten minutes with a reminder.
    let today = jiff::ZonedDateTime::now().date();
    let monday = today
        .checked_sub(jiff::Span::new().days(i64::from(today.weekday().to_monday_zero_offset())))
        .expect("monday");
    let day = |n: i64| {
        monday
            .checked_add(jiff::Span::new().days(n))
            .expect("a day")
            .to_string()
    };
    for (kind, subject, when, ends) in [
        (
            "meeting",
            "Weekly review",
            format!("{} 09:00", day(0)),
            Some(format!("{} 10:00", day(0))),
        ),
        ("call", "Supplier call", format!("{} 09:30", day(0)), None),
    ] {
        let mut args = vec![
            "activity",
            "add",
            kind,
            "--subject",
            subject,
            "--when",
            &when,
            "--owner",
            ME,
        ];
        if let Some(e) = &ends {
            args.extend(["--ends", e.as_str()]);
        }
        a.ok(&args);
    }
    let soon = jiff::Timestamp::now()
        .checked_add(jiff::Span::new().minutes(10))
        .expect("soon")
        .to_string();
    a.ok(&[
        "activity",
        "add",
        "meeting",
        "--subject",
        "Pricing call",
        "--when",
        &soon,
        "--remind",
        "15m",
        "--owner",
        ME,
    ]);

    let login = a.json(&["open", "--print"])["login"]
        .as_str()
        .expect("a login link")
        .to_string();
    let ui = login
        .split_once("/login")
        .map(|(base, _)| base.to_string())
        .expect("the login link is on the UI's address");
    assert!(ui.starts_with("http://127.0.0.1:"), "{ui}");

    let out_dir = tempfile::tempdir().expect("tempdir");
    let (stdout_path, stderr_path) = (out_dir.path().join("stdout"), out_dir.path().join("stderr"));
    let mut command = Command::new("node");
    command
        .arg(root.join("tests/browser/e2e.mjs"))
        .current_dir(&root)
        .env("RAPPORT_UI", &ui)
        .env("RAPPORT_LOGIN", &login)
        .env("RAPPORT_BIN", env!("CARGO_BIN_EXE_rapport"))
        .env("RAPPORT_RELAY", "none")
        .env("RAPPORT_DISCOVERY", "none")
        .env("RAPPORT_B_DIR", &b.dir)
        .env("RAPPORT_SPACE", SPACE)
        .env("RAPPORT_SHARED_ID", &acme_id)
        .env("RAPPORT_SHARED_NAME", SHARED_COMPANY)
        .env("RAPPORT_MONDAY", day(0))
        .env("RAPPORT_TUESDAY", day(1))
        .env("RAPPORT_WEDNESDAY", day(2))
        .env("RAPPORT_CHROMIUM", chromium())
        .env(
            "RAPPORT_FAILURES",
            root.join("target").join("browser-failures"),
        )
        .env_remove("RAPPORT_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut script = Script {
        child: command.spawn().expect("run node"),
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = script.child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_DEADLINE {
            script.kill_group();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    match status {
        None => panic!(
            "tests/browser/e2e.mjs did not finish within {} s\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            SCRIPT_DEADLINE.as_secs()
        ),
        Some(s) => assert!(
            s.success(),
            "tests/browser/e2e.mjs failed ({s})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        ),
    }
    // The steps and their times, shown with --nocapture.
    println!("{stdout}");
    assert!(
        stdout.contains("all browser steps passed"),
        "the script exited without finishing its steps:\n{stdout}"
    );
}
