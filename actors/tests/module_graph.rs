//! No import cycles between the top-level modules of either crate.
//!
//! Reads the `.rs` files of `actors/src` and of the binary's `src`, builds the graph "module A
//! names `crate::B`" from the code (comments and doc comments ignored, nested
//! `use crate::{a::X, b::{Y, Z}}` groups included) and fails listing every strongly connected
//! component of more than one module (Tarjan). A file's unit tests (`#[cfg(test)] mod tests`,
//! at its end) are not part of the library and are left out: a test may build a whole tree.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// `src` up to its unit-test module (`#[cfg(test)]` followed by `mod tests`), if it has one.
fn without_unit_tests(src: &str) -> &str {
    match src.find("#[cfg(test)]\nmod tests") {
        Some(at) => &src[..at],
        None => src,
    }
}

/// `src` without its comments: `// …` to the end of the line (doc comments included) and
/// `/* … */` blocks (nested ones too). String literals are kept as they are.
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let bytes = src.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if depth > 0 {
            if rest.starts_with(b"*/") {
                depth -= 1;
                i += 2;
            } else if rest.starts_with(b"/*") {
                depth += 1;
                i += 2;
            } else {
                if bytes[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            continue;
        }
        if rest.starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            depth = 1;
            i += 2;
        } else {
            let ch = src[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The identifiers `m` for which the (comment-free) code names `crate::m`, directly or as the
/// first segment of a path inside a `use crate::{…}` group (at any depth).
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    let needle = b"crate::";
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        if !bytes[i..].starts_with(needle) || (i > 0 && is_ident(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let mut j = i + needle.len();
        if bytes.get(j) == Some(&b'{') {
            // A group: every path in it starts with a module of the crate.
            let mut level = 0usize;
            let mut at_path_start = true;
            while j < bytes.len() {
                let b = bytes[j];
                match b {
                    b'{' => {
                        level += 1;
                        at_path_start = level == 1;
                        j += 1;
                    }
                    b'}' => {
                        level = level.saturating_sub(1);
                        j += 1;
                        if level == 0 {
                            break;
                        }
                    }
                    b',' => {
                        at_path_start = level == 1;
                        j += 1;
                    }
                    _ if b.is_ascii_whitespace() => j += 1,
                    _ if is_ident(b) => {
                        let start = j;
                        while j < bytes.len() && is_ident(bytes[j]) {
                            j += 1;
                        }
                        if at_path_start && bytes[j..].starts_with(b"::") {
                            found.insert(code[start..j].to_string());
                        }
                        at_path_start = false;
                    }
                    _ => {
                        at_path_start = false;
                        j += 1;
                    }
                }
            }
        } else {
            let start = j;
            while j < bytes.len() && is_ident(bytes[j]) {
                j += 1;
            }
            if j > start {
                found.insert(code[start..j].to_string());
            }
        }
        i = j.max(i + 1);
    }
    found
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The top-level module a file belongs to (`spawner/child.rs` → `spawner`), `None` for the
/// crate root (`lib.rs`, `main.rs`).
fn top_module(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        return None;
    }
    parts.into_iter().next()
}

/// The module graph of one crate from (module, source) pairs: an edge `a → b` when `a`'s code
/// names `crate::b`, for `b` another module of the list.
fn module_graph<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Graph {
    let sources: Vec<(&str, &str)> = sources.into_iter().collect();
    let mut graph: Graph = sources
        .iter()
        .map(|(m, _)| (m.to_string(), BTreeSet::new()))
        .collect();
    for (module, src) in &sources {
        for target in crate_references(&strip_comments(without_unit_tests(src))) {
            if target != *module && graph.contains_key(&target) {
                graph
                    .get_mut(*module)
                    .expect("every module is a key")
                    .insert(target);
            }
        }
    }
    graph
}

/// The strongly connected components of more than one node (Tarjan), each sorted.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        next: usize,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        next: 0,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// The cycles of the crate whose sources are in `root`, described one per line.
fn crate_cycles(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(root, &mut files).unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()));
    let mut sources: Vec<(String, String)> = Vec::new();
    for file in &files {
        if let Some(module) = top_module(root, file) {
            let text = fs::read_to_string(file)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            sources.push((module, text));
        }
    }
    let graph = module_graph(sources.iter().map(|(m, s)| (m.as_str(), s.as_str())));
    cycles(&graph)
        .into_iter()
        .map(|comp| {
            let edges: Vec<String> = comp
                .iter()
                .map(|a| {
                    let to: Vec<&str> = graph[a]
                        .iter()
                        .filter(|b| comp.contains(b))
                        .map(String::as_str)
                        .collect();
                    format!("{a} -> {to:?}")
                })
                .collect();
            format!("{}: cycle {comp:?}: {}", root.display(), edges.join(", "))
        })
        .collect()
}

#[test]
fn neither_crate_has_an_import_cycle() {
    let actors = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = crate_cycles(&actors.join("src"));
    let binary = actors.join("..").join("src");
    assert!(
        binary.join("main.rs").is_file(),
        "the binary's sources are not at {}",
        binary.display()
    );
    found.extend(crate_cycles(&binary));
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn unit_test_modules_are_not_edges() {
    let graph = module_graph([
        (
            "a",
            "fn f() { crate::b::g(); }\n#[cfg(test)]\nmod tests { use crate::c::X; }\n",
        ),
        ("b", ""),
        ("c", "fn h() { crate::a::f(); }\n"),
    ]);
    assert!(cycles(&graph).is_empty(), "{graph:?}");
}

#[test]
fn a_synthetic_cycle_is_found() {
    let graph = module_graph([
        ("a", "use crate::{b::X, c::{Y, Z}};\n"),
        ("b", "fn f() { crate::c::g(); }\n"),
        ("c", "use crate::a;\n"),
        ("d", "use crate::a::Thing;\n"),
    ]);
    assert_eq!(graph["a"], BTreeSet::from(["b".into(), "c".into()]));
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);
}

#[test]
fn comments_and_inner_group_paths_are_not_edges() {
    let graph = module_graph([
        (
            "a",
            "//! See [`crate::b`].\n/// Uses crate::c.\n/* crate::b */ use crate::{x::{b::Y}};\n",
        ),
        ("b", "use crate::a;\n"),
        ("c", "use crate::a;\n"),
        ("x", ""),
    ]);
    assert_eq!(graph["a"], BTreeSet::from(["x".into()]));
    assert!(cycles(&graph).is_empty());
}

#[test]
fn nested_group_heads_are_edges() {
    let graph = module_graph([
        ("a", "use crate::{\n    b::{Y, Z},\n    c::W,\n};\n"),
        ("b", ""),
        ("c", "pub(crate) use crate::a::Q;\n"),
    ]);
    assert_eq!(graph["a"], BTreeSet::from(["b".into(), "c".into()]));
    assert_eq!(cycles(&graph), vec![vec!["a", "c"]]);
}
