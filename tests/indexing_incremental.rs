//! Incremental cycles: add, change, delete, binary files, and projects that appear or vanish.

mod indexing_support;

use std::fs;
use std::time::{Duration, SystemTime};

use indexing_support::Fixture;

fn key(project: &str, path: &str) -> (String, String) {
    (project.into(), path.into())
}

#[test]
fn add_change_delete_and_unchanged() {
    let f = Fixture::new();
    f.write("a.rs", "fn a() {}\n");
    f.write("b.py", "print(1)\nprint(2)\n");
    f.write("c.bin", b"\x7fELF\0\0\x01binary\ncontent\n");
    let (st, log) = f.run_once();
    assert!(st.success(), "{}", log.join("\n"));
    // (files, new, changed, removed, unchanged, errors)
    assert_eq!(f.last_cycle(), (3, 3, 0, 0, 0, 0));
    let first = f.files();
    let bin = &first[&key("tree", "c.bin")];
    assert!(bin.is_binary);
    assert_eq!(bin.lines, None);
    assert_eq!(first[&key("tree", "b.py")].lines, Some(2));
    assert_eq!(
        first[&key("tree", "b.py")].language.as_deref(),
        Some("python")
    );

    let (st, log) = f.run_once();
    assert!(st.success());
    assert_eq!(f.last_cycle(), (3, 0, 0, 0, 3, 0), "{}", log.join("\n"));
    assert!(
        log.iter()
            .any(|l| l.contains("0 new, 0 changed, 0 removed, 3 unchanged"))
    );
    assert_eq!(f.files(), first, "an unchanged cycle must not touch rows");

    f.write("a.rs", "fn a() {}\nfn b() {}\n");
    f.write("d.md", "# d\n");
    fs::remove_file(f.tree.join("b.py")).unwrap();
    let (st, _) = f.run_once();
    assert!(st.success());
    assert_eq!(f.last_cycle(), (3, 1, 1, 1, 1, 0));
    let now = f.files();
    assert!(!now.contains_key(&key("tree", "b.py")));
    assert_eq!(now[&key("tree", "a.rs")].lines, Some(2));
    assert_ne!(
        now[&key("tree", "a.rs")].hash,
        first[&key("tree", "a.rs")].hash
    );
    assert_eq!(
        now[&key("tree", "d.md")].language.as_deref(),
        Some("markdown")
    );

    // Same size, new content, new mtime: reread.
    let a = f.write("a.rs", "fn x() {}\nfn y() {}\n");
    let later = SystemTime::now() + Duration::from_secs(10);
    fs::File::options()
        .write(true)
        .open(&a)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let (st, _) = f.run_once();
    assert!(st.success());
    assert_eq!(f.last_cycle(), (3, 0, 1, 0, 2, 0));
    assert_ne!(
        f.files()[&key("tree", "a.rs")].hash,
        now[&key("tree", "a.rs")].hash
    );
}

#[test]
fn projects_appear_and_vanish() {
    let f = Fixture::new();
    f.write("top.rs", "x\n");
    f.write("sub/x.rs", "x\n");
    f.write("gone/Cargo.toml", "[package]\n");
    f.write("gone/src/lib.rs", "x\n");
    let (st, _) = f.run_once();
    assert!(st.success());
    assert_eq!(f.paths_of("tree"), ["sub/x.rs", "top.rs"]);
    assert_eq!(f.paths_of("gone"), ["Cargo.toml", "src/lib.rs"]);

    // A marker appears in sub: its file moves to the new project; gone/ is deleted.
    f.write("sub/package.json", "{}\n");
    fs::remove_dir_all(f.tree.join("gone")).unwrap();
    let (st, log) = f.run_once();
    assert!(st.success(), "{}", log.join("\n"));
    let names: Vec<String> = f.projects().into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["tree", "sub"]);
    assert_eq!(f.paths_of("tree"), ["top.rs"]);
    assert_eq!(f.paths_of("sub"), ["package.json", "x.rs"]);
    assert!(
        log.iter().any(|l| l.contains("removed project")),
        "{}",
        log.join("\n")
    );
    assert!(
        log.iter()
            .any(|l| l.contains("created project") && l.ends_with(" sub"))
    );
    // files: top.rs, sub/package.json, sub/x.rs; new: package.json; changed: x.rs (moved);
    // removed: the two files of gone/.
    assert_eq!(f.last_cycle(), (3, 1, 1, 2, 1, 0));

    // The marker goes again: x.rs returns to the root project.
    fs::remove_file(f.tree.join("sub/package.json")).unwrap();
    let (st, _) = f.run_once();
    assert!(st.success());
    assert_eq!(f.paths_of("tree"), ["sub/x.rs", "top.rs"]);
    assert_eq!(f.projects().len(), 1);
}

#[test]
fn two_workers_share_the_database_without_removing_each_other() {
    let f = Fixture::new();
    fs::write(
        &f.config,
        r#"(
    data_dir: "var",
    workers: [
        (name: "a", kind: Indexing(roots: ["tree/a"], interval: "1s")),
        (name: "b", kind: Indexing(roots: ["tree/b"], interval: "1s")),
    ],
)"#,
    )
    .unwrap();
    f.write("a/x.rs", "x\n");
    f.write("b/y.rs", "y\n");
    for name in ["a", "b", "a"] {
        let (st, log) = f.run_with(&["--once", "--name", name], |_| {});
        assert!(st.success(), "{}", log.join("\n"));
        assert!(
            !log.iter().any(|l| l.contains("removed project")),
            "{}",
            log.join("\n")
        );
    }
    assert_eq!(f.paths_of("a"), ["x.rs"]);
    assert_eq!(f.paths_of("b"), ["y.rs"]);
    // (files, new, changed, removed, unchanged, errors) of a's second cycle: its own file only.
    assert_eq!(f.last_cycle(), (1, 0, 0, 0, 1, 0));
}
