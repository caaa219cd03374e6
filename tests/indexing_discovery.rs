//! Discovery: nested projects, .gitignore / .ignore / hidden files, project ids and names.

mod indexing_support;

use indexing_support::Fixture;

fn build_tree(f: &Fixture) {
    f.write("README.md", "# top\n\nroot-level file\n");
    f.write("notes.txt", "no trailing newline");
    f.write(".ignore", "*.log\n");
    f.write("debug.log", "ignored by .ignore\n");
    // A git project with a workspace member (not a project of its own) and ignored output.
    f.write("app/.git/HEAD", "ref: refs/heads/main\n");
    f.write("app/.gitignore", "target/\n");
    f.write("app/Cargo.toml", "[workspace]\n");
    f.write("app/src/main.rs", "fn main() {\n    println!(\"hi\");\n}\n");
    f.write("app/crates/member/Cargo.toml", "[package]\n");
    f.write("app/crates/member/src/lib.rs", "pub fn f() {}\n");
    f.write("app/target/debug/out.rs", "ignored\n");
    f.write("app/.hidden.rs", "hidden\n");
    f.write("app/.github/workflows/ci.yml", "hidden dir\n");
    // A monorepo (.git is a file, as in worktrees) whose sub-folders hold markers.
    f.write("mono/.git", "gitdir: /elsewhere\n");
    f.write("mono/.gitignore", "node_modules/\n");
    f.write("mono/tools/run.sh", "#!/bin/sh\necho hi\n");
    f.write("mono/web/package.json", "{}\n");
    f.write("mono/web/index.js", "console.log(1)\n");
    f.write("mono/web/node_modules/dep/package.json", "{}\n");
    f.write("mono/web/node_modules/dep/index.js", "ignored\n");
    f.write("mono/api/go.mod", "module api\n");
    f.write("mono/api/main.go", "package main\n");
    // A marker project with a vendored git checkout inside.
    f.write("lib/pyproject.toml", "[project]\n");
    f.write("lib/pkg/__init__.py", "x = 1\n");
    f.write("lib/vendor/sub/.git/HEAD", "ref: x\n");
    f.write("lib/vendor/sub/x.c", "int x;\n");
}

#[test]
fn nested_projects_ignores_and_hidden_files() {
    let f = Fixture::new();
    build_tree(&f);
    let (st, log) = f.run_once();
    assert!(st.success(), "exit {st:?}; log:\n{}", log.join("\n"));

    let projects: Vec<(String, String)> = f
        .projects()
        .into_iter()
        .map(|(name, _, kind)| (name, kind))
        .collect();
    let mut want = vec![
        ("tree", "root"),
        ("app", "git"),
        ("lib", "marker"),
        ("sub", "git"),
        ("mono", "git"),
        ("api", "marker"),
        ("web", "marker"),
    ];
    want.sort_by_key(|(n, _)| *n);
    let mut got = projects.clone();
    got.sort();
    let want: Vec<(String, String)> = want
        .into_iter()
        .map(|(a, b)| (a.into(), b.into()))
        .collect();
    assert_eq!(got, want);

    assert_eq!(f.paths_of("tree"), ["README.md", "notes.txt"]);
    assert_eq!(
        f.paths_of("app"),
        [
            "Cargo.toml",
            "crates/member/Cargo.toml",
            "crates/member/src/lib.rs",
            "src/main.rs"
        ]
    );
    assert_eq!(f.paths_of("mono"), ["tools/run.sh"]);
    assert_eq!(f.paths_of("web"), ["index.js", "package.json"]);
    assert_eq!(f.paths_of("api"), ["go.mod", "main.go"]);
    assert_eq!(f.paths_of("lib"), ["pkg/__init__.py", "pyproject.toml"]);
    assert_eq!(f.paths_of("sub"), ["x.c"]);

    let files = f.files();
    let main = &files[&("app".into(), "src/main.rs".into())];
    assert_eq!(main.language.as_deref(), Some("rust"));
    assert_eq!(main.lines, Some(3));
    assert_eq!(main.size, 34);
    assert_eq!(main.hash.len(), 16);
    assert!(!main.is_binary);
    assert_eq!(files[&("tree".into(), "notes.txt".into())].lines, Some(1));
    assert_eq!(
        files[&("mono".into(), "tools/run.sh".into())]
            .language
            .as_deref(),
        Some("shell")
    );
    assert_eq!(
        files[&("sub".into(), "x.c".into())].language.as_deref(),
        Some("c")
    );

    // Roots are absolute; ids are 16 hex digits; "created project" is logged once each.
    let conn = f.conn();
    let (root, id): (String, String) = conn
        .query_row(
            "SELECT root, id FROM projects WHERE name = 'app'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        root.starts_with('/') && root.ends_with("/tree/app"),
        "{root}"
    );
    assert!(
        id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    let created = |log: &[String]| log.iter().filter(|l| l.contains("created project")).count();
    assert_eq!(created(&log), 7, "{}", log.join("\n"));
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("created project {id} app")))
    );
    let (st, log2) = f.run_once();
    assert!(st.success());
    assert_eq!(created(&log2), 0, "{}", log2.join("\n"));
}

#[test]
fn gitignore_is_honoured_without_a_git_repository() {
    let f = Fixture::new();
    f.write(".gitignore", "*.tmp\nbuild/\n!keep.tmp\n");
    f.write("a.rs", "fn a() {}\n");
    f.write("b.tmp", "x\n");
    f.write("keep.tmp", "x\n");
    f.write("build/out.rs", "x\n");
    f.write("sub/.gitignore", "local.rs\n");
    f.write("sub/local.rs", "x\n");
    f.write("sub/other.rs", "x\n");
    let (st, log) = f.run_once();
    assert!(st.success(), "{}", log.join("\n"));
    assert_eq!(f.paths_of("tree"), ["a.rs", "keep.tmp", "sub/other.rs"]);
}
