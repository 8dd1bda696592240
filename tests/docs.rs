//! Docs that cannot drift: `docs/ARCHITECTURE.md` names every crate of
//! the workspace, every module of `node/` and every sled tree of the
//! store. A new one fails this test until the map says where it belongs.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The workspace's member paths, from the root `Cargo.toml`.
fn members() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn package_name(member: &str) -> String {
    let manifest = read(&format!("{member}/Cargo.toml"));
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("name = "))
        .map(|n| n.trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("{member}/Cargo.toml has no name"))
}

#[test]
fn the_architecture_map_names_every_crate() {
    let map = read("docs/ARCHITECTURE.md");
    let members = members();
    assert!(members.len() >= 8, "{members:?}");
    for member in members {
        let name = package_name(&member);
        assert!(
            map.contains(&format!("| `{name}` | `{member}")),
            "docs/ARCHITECTURE.md has no row for crate {name} ({member}/) in its crate table"
        );
    }
}

#[test]
fn the_architecture_map_names_every_module_of_the_node() {
    let map = read("docs/ARCHITECTURE.md");
    let mut modules = Vec::new();
    for entry in std::fs::read_dir(root().join("node/src")).expect("node/src") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .expect("a name")
            .to_string();
        if name != "lib" && (path.is_dir() || path.extension().is_some_and(|e| e == "rs")) {
            modules.push(name);
        }
    }
    assert!(modules.len() >= 10, "{modules:?}");
    for m in modules {
        assert!(
            map.contains(&format!("| `{m}` |")),
            "docs/ARCHITECTURE.md's table of node/ modules has no row for `{m}`"
        );
    }
}

#[test]
fn the_architecture_map_names_every_store_tree() {
    let map = read("docs/ARCHITECTURE.md");
    let store = read("crates/store/src/lib.rs");
    let trees: Vec<&str> = store
        .split("open_tree(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(trees.len() >= 10, "{trees:?}");
    let layout = map
        .split("store/             sled")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the storage layout names sled's trees");
    for tree in trees {
        assert!(
            layout.contains(tree),
            "docs/ARCHITECTURE.md's storage layout does not name the sled tree `{tree}`"
        );
    }
}
