//! No import cycle among the gateway's modules.
//!
//! Reads the crate's own `src/`, takes every `crate::…` and `super::…` path
//! outside comments and test code as an edge from the module the file is
//! to the module the path names, and checks, at every level of the module
//! tree, that sibling modules do not depend on each other in a circle: an
//! edge from `a::x` to `b::y` is an edge from `a` to `b` among the children
//! of the root. A parent using its children, or a child its parent, is not
//! a cycle (`mod.rs` declares them).
//!
//! `cargo modules dependencies --acyclic` answers the same question; this
//! needs nothing installed and runs with the crate's tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

#[test]
fn the_gateways_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&src);
    assert!(files.len() > 20, "read {} files from {src:?}", files.len());
    let modules: BTreeSet<Module> = files.iter().map(|(module, _)| module.clone()).collect();
    let mut graphs: BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut witnesses: BTreeMap<(Module, String, String), String> = BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for reference in references(&code_of(&text), module) {
            let Some(target) = resolve(&reference, &modules) else {
                continue;
            };
            let shared = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            // One is inside the other: parent and child, not siblings.
            if shared == module.len() || shared == target.len() {
                continue;
            }
            let parent = module[..shared].to_vec();
            let (from, to) = (module[shared].clone(), target[shared].clone());
            graphs
                .entry(parent.clone())
                .or_default()
                .entry(from.clone())
                .or_default()
                .insert(to.clone());
            witnesses.entry((parent, from, to)).or_insert_with(|| {
                let file = path.strip_prefix(&src).unwrap_or(path);
                format!("src/{} uses {}", file.display(), reference.join("::"))
            });
        }
    }
    let mut cycles = Vec::new();
    for (parent, graph) in &mut graphs {
        // Every cycle, each reported once: one of its edges is taken out
        // before looking again.
        while let Some(cycle) = find_cycle(graph) {
            let (last, first) = (&cycle[cycle.len() - 2], &cycle[cycle.len() - 1]);
            graph.get_mut(last).unwrap().remove(first);
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|pair| {
                    let key = (parent.clone(), pair[0].clone(), pair[1].clone());
                    format!("  {} -> {}: {}", pair[0], pair[1], witnesses[&key])
                })
                .collect();
            cycles.push(format!(
                "in crate::{}:\n{}",
                parent.join("::"),
                steps.join("\n")
            ));
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles among the gateway's modules:\n{}",
        cycles.join("\n")
    );
}

/// Every library source file with the module it is, tests left out.
fn sources(src: &Path) -> Vec<(Module, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let is_test = name == "tests.rs" || name.ends_with("_tests.rs");
            if !name.ends_with(".rs") || is_test || path.parent() == Some(src) && name == "main.rs"
            {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let mut module: Module = relative
                .iter()
                .map(|part| part.to_str().unwrap().trim_end_matches(".rs").to_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            if module.iter().any(|part| part == "tests") {
                continue;
            }
            out.push((module, path));
        }
    }
    out
}

/// The file's code: comments blanked, and the test module at its end cut.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod ") && next.ends_with('{'))
        {
            break;
        }
        out.push_str(strip_comment(line));
        out.push('\n');
    }
    out
}

/// `line` up to a `//` that is not inside a string literal.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

/// The absolute paths the code names with `crate::`, `super::` or
/// `self::`, brace groups of `use` expanded one level.
fn references(code: &str, module: &Module) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let after_path_char = i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == b':');
        if after_path_char || !code.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &code[i..];
        let (mut base, skip) = if rest.starts_with("crate::") {
            (Vec::new(), "crate::".len())
        } else if rest.starts_with("super::") || rest.starts_with("self::") {
            let mut base = module.clone();
            let mut at = 0;
            loop {
                if code[i + at..].starts_with("super::") {
                    base.pop();
                    at += "super::".len();
                } else if code[i + at..].starts_with("self::") {
                    at += "self::".len();
                } else {
                    break;
                }
            }
            (base, at)
        } else {
            i += 1;
            continue;
        };
        let mut j = i + skip;
        // The path's segments, up to a brace group.
        loop {
            let start = j;
            while j < bytes.len() && is_ident(bytes[j]) {
                j += 1;
            }
            if start == j {
                break;
            }
            base.push(code[start..j].to_owned());
            if code[j..].starts_with("::") {
                j += 2;
            } else {
                break;
            }
        }
        if bytes.get(j) == Some(&b'{') {
            let end = matching_brace(code, j);
            expand(&base, &code[j + 1..end], &mut out);
            j = end;
        } else {
            out.push(base);
        }
        i = j.max(i + 1);
    }
    out
}

/// Where the brace group opening at `open` closes.
fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0;
    for (at, byte) in code.bytes().enumerate().skip(open) {
        match byte {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return at;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// The paths of a `use` group's items (`a::X, b::{Y, Z}`) under `base`.
fn expand(base: &[String], group: &str, out: &mut Vec<Vec<String>>) {
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (at, byte) in group.bytes().enumerate() {
        match byte {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                items.push(&group[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        let mut path = base.to_vec();
        match item.find('{') {
            Some(open) => {
                let head = item[..open].trim_end_matches("::");
                path.extend(head.split("::").map(|s| s.trim().to_owned()));
                let end = matching_brace(item, open);
                expand(&path, &item[open + 1..end], out);
            }
            None => {
                let item = item.split(" as ").next().unwrap_or(item);
                path.extend(item.split("::").map(|s| s.trim().to_owned()));
                out.push(path);
            }
        }
    }
}

/// The longest known module `path` starts with.
fn resolve(path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|len| path[..len].to_vec())
        .find(|prefix| modules.contains(prefix))
}

/// A cycle of `graph`, as the nodes walked (the first repeated at the end).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn the_check_finds_a_cycle_and_reads_use_groups() {
    let module = |m: &str| m.split("::").map(str::to_owned).collect::<Module>();
    let code = code_of(
        "use crate::{a::X, b::{Y, Z}};\n// crate::c::W\nlet s = \"//\"; crate::d::f();\n\
         #[cfg(test)]\nmod tests {\n    use crate::e::V;\n}\n",
    );
    let found: Vec<String> = references(&code, &module("x::y"))
        .iter()
        .map(|r| r.join("::"))
        .collect();
    assert_eq!(found, ["a::X", "b::Y", "b::Z", "d::f"]);
    let supers: Vec<String> = references("use super::super::q::R;", &module("x::y"))
        .iter()
        .map(|r| r.join("::"))
        .collect();
    assert_eq!(supers, ["q::R"]);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph).unwrap(),
        ["a", "b", "c", "a"].map(String::from)
    );
}
