//! The shape of the source tree, held by a test so that it cannot drift (issue 16):
//! - no import circle between sibling modules, at any level of any crate (each sibling counted
//!   with everything below it; a module naming its own ancestor or descendant is containment,
//!   not a circle);
//! - no production source file over [`MAX_LINES`], generated tables and test files excepted.
//!
//! Test code (`tests.rs` files and `#[cfg(test)] mod … { … }` blocks) and comments are left out:
//! a test may reach anywhere, and a doc link is not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates' source folders, relative to the workspace root.
const CRATE_SOURCES: &[&str] = &[
    "gateway/src",
    "gateway/wire/src",
    "backends/src",
    "policy/src",
    "bench/src",
    "tests/src",
];

/// The room size the house keeps (issue 16: "no source file over ~700 lines").
const MAX_LINES: usize = 700;

/// Files exempt from [`MAX_LINES`]: generated, or test support rather than production code.
const LENGTH_EXEMPT: &[&str] = &["gateway/wire/src/spec.rs", "tests/src/lib.rs"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read source folder") {
        let path = entry.expect("folder entry").path();
        if path.is_dir() {
            // src/bin/* are separate crates with no `crate::` paths into this one.
            if path.file_name().is_some_and(|n| n != "bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `a/b/c.rs` → `["a","b","c"]`; `a/mod.rs` → `["a"]`; `lib.rs`/`main.rs` → `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().expect("a file name");
    let stem = file.trim_end_matches(".rs");
    if !(stem == "mod" || (parts.is_empty() && (stem == "lib" || stem == "main"))) {
        parts.push(stem.to_string());
    }
    parts
}

fn is_test_file(rel: &Path) -> bool {
    rel.file_name().is_some_and(|n| n == "tests.rs") || rel.iter().any(|p| p == "tests")
}

/// The file's production code: comments dropped, `#[cfg(test)] mod x { … }` blocks cut out.
/// Returns (line number, text) pairs.
fn production_lines(source: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim();
        if trimmed == "#[cfg(test)]" {
            let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
            if next.starts_with("mod ") && next.ends_with('{') {
                let mut depth = 0i64;
                let mut j = i + 1;
                while j < lines.len() {
                    depth += lines[j].matches('{').count() as i64;
                    depth -= lines[j].matches('}').count() as i64;
                    if depth <= 0 {
                        break;
                    }
                    j += 1;
                }
                i = j + 1;
                continue;
            }
        }
        let code = match lines[i].find("//") {
            Some(at) => &lines[i][..at],
            None => lines[i],
        };
        out.push((i + 1, code.to_string()));
        i += 1;
    }
    out
}

/// Module paths named on one line: `crate::a::b`, `super::x`, `self::y`, and the first-level
/// names of `crate::{a, b::c}` groups, resolved against the file's own module path.
fn references(line: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (start, _) in line
        .match_indices("crate::")
        .chain(line.match_indices("super::"))
    {
        let before = line[..start].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut base: Vec<String> = if line[start..].starts_with("crate::") {
            Vec::new()
        } else {
            let mut b = here.to_vec();
            b.pop();
            b
        };
        // Both prefixes are seven characters long.
        let mut rest = &line[start + 7..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let mut path = base.clone();
                path.extend(segments(item.trim()));
                found.push(path);
            }
        } else {
            let mut path = base;
            path.extend(segments(rest));
            found.push(path);
        }
    }
    found
}

/// The leading `a::b::c` of `a::b::c::Item(…)`: identifiers up to the first non-path character.
fn segments(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for seg in s.split("::") {
        let ident: String = seg
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            break;
        }
        let whole = ident.len() == seg.len();
        out.push(ident);
        if !whole {
            break;
        }
    }
    out
}

/// An edge between two siblings, with one line that made it.
type Edges = BTreeMap<(Vec<String>, String, String), String>;

#[test]
fn no_import_circle_between_sibling_modules() {
    let root = workspace_root();
    let mut circles = Vec::new();
    for krate in CRATE_SOURCES {
        let src = root.join(krate);
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeSet<Vec<String>> = files
            .iter()
            .map(|f| module_path(f.strip_prefix(&src).expect("under src")))
            .collect();
        let mut edges: Edges = BTreeMap::new();
        for file in &files {
            let rel = file.strip_prefix(&src).expect("under src");
            if is_test_file(rel) {
                continue;
            }
            let here = module_path(rel);
            let source = std::fs::read_to_string(file).expect("read source");
            for (number, line) in production_lines(&source) {
                for target in references(&line, &here) {
                    // The longest prefix of the named path that is a module file.
                    let Some(target) = (0..=target.len())
                        .rev()
                        .map(|n| target[..n].to_vec())
                        .find(|p| modules.contains(p))
                    else {
                        continue;
                    };
                    let common = here.iter().zip(&target).take_while(|(a, b)| a == b).count();
                    if common == here.len() || common == target.len() {
                        continue;
                    }
                    edges
                        .entry((
                            here[..common].to_vec(),
                            here[common].clone(),
                            target[common].clone(),
                        ))
                        .or_insert_with(|| {
                            format!("{krate}/{}:{number}: {}", rel.display(), line.trim())
                        });
                }
            }
        }
        circles.extend(find_circles(krate, &edges));
    }
    assert!(
        circles.is_empty(),
        "import circles between sibling modules:\n{}",
        circles.join("\n")
    );
}

/// Every circle among siblings, one line per edge with the source line that made it.
fn find_circles(krate: &str, edges: &Edges) -> Vec<String> {
    let mut by_parent: BTreeMap<&Vec<String>, BTreeMap<&String, Vec<&String>>> = BTreeMap::new();
    for (parent, from, to) in edges.keys() {
        by_parent
            .entry(parent)
            .or_default()
            .entry(from)
            .or_default()
            .push(to);
    }
    let mut report = Vec::new();
    for (parent, graph) in by_parent {
        let mut seen = BTreeSet::new();
        for start in graph.keys() {
            let mut stack = vec![*start];
            if let Some(cycle) = walk(&graph, &mut stack, &mut seen) {
                let mut text = format!("{krate} under `{}`:", parent.join("::"));
                for pair in cycle.windows(2) {
                    let key = (parent.clone(), pair[0].clone(), pair[1].clone());
                    text.push_str(&format!(
                        "\n  {} → {}   ({})",
                        pair[0], pair[1], edges[&key]
                    ));
                }
                report.push(text);
                break;
            }
        }
    }
    report
}

fn walk<'a>(
    graph: &BTreeMap<&'a String, Vec<&'a String>>,
    stack: &mut Vec<&'a String>,
    done: &mut BTreeSet<&'a String>,
) -> Option<Vec<&'a String>> {
    let node = *stack.last()?;
    for next in graph.get(node).into_iter().flatten() {
        if let Some(at) = stack.iter().position(|n| n == next) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(next);
            return Some(cycle);
        }
        if done.contains(next) {
            continue;
        }
        stack.push(next);
        if let Some(cycle) = walk(graph, stack, done) {
            return Some(cycle);
        }
        stack.pop();
    }
    done.insert(node);
    None
}

#[test]
fn no_production_file_over_the_room_size() {
    let root = workspace_root();
    let mut too_big = Vec::new();
    for krate in CRATE_SOURCES {
        let src = root.join(krate);
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for file in files {
            let rel = file.strip_prefix(&root).expect("under root");
            let rel_in_crate = file.strip_prefix(&src).expect("under src");
            if is_test_file(rel_in_crate) || LENGTH_EXEMPT.iter().any(|e| Path::new(e) == rel) {
                continue;
            }
            let source = std::fs::read_to_string(&file).expect("read source");
            let lines = production_lines(&source).len();
            if lines > MAX_LINES {
                too_big.push(format!("{}: {lines} lines", rel.display()));
            }
        }
    }
    assert!(
        too_big.is_empty(),
        "source files over {MAX_LINES} lines (split them along their seams):\n{}",
        too_big.join("\n")
    );
}

/// The FFI modules allowed to use `unsafe`, one per crate that needs it (the workspace lints
/// deny it; this keeps a stray `allow` from widening that): the environment scrubbing, and
/// RSA-OAEP through AWS-LC.
const UNSAFE_ALLOWED_IN: [&str; 2] = ["backends/src/asym/oaep_ffi.rs", "gateway/src/environ.rs"];

#[test]
fn unsafe_is_allowed_in_one_module_only() {
    let root = workspace_root();
    let mut allowed = Vec::new();
    for krate in CRATE_SOURCES {
        let mut files = Vec::new();
        rust_files(&root.join(krate), &mut files);
        for file in files {
            let source = std::fs::read_to_string(&file).expect("read source");
            if source.contains("allow(unsafe_code)") {
                let rel = file.strip_prefix(&root).expect("under root");
                allowed.push(rel.display().to_string());
            }
        }
    }
    allowed.sort();
    assert_eq!(
        allowed, UNSAFE_ALLOWED_IN,
        "`unsafe` allowed outside {UNSAFE_ALLOWED_IN:?}"
    );
}
