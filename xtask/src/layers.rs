//! `cargo xtask layers`: the architecture invariants that are about files, checked from the
//! sources (and by this module's tests, so CI holds them):
//!
//! - no two source files of a crate import each other, directly or around a circle;
//! - inside fer-kernels, a module imports only modules declared above it in `lib.rs` (the crate
//!   root, which turns the kernels into burn operations, is the top and is imported by none).
//!
//! A file "imports" another where it names it by a path from the crate root (`a::b` after the
//! `crate` keyword, or a `use` group of them), by `super` paths, or in a doc link (a doc link to a
//! module above is an import in disguise). A name the root re-exports counts as the module that
//! defines it. A parent declaring its child modules (`mod x;`) is not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The files of one crate as modules (`gemm::driver`; the crate root is `""`) and the modules
/// each one names.
#[derive(Debug, Default)]
pub struct Graph {
    pub files: BTreeMap<String, PathBuf>,
    pub imports: BTreeMap<String, BTreeSet<String>>,
}

/// The module path of `file` under `src` (`gemm/mod.rs` and `gemm.rs` are both `gemm`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    Some(parts.join("::"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The paths `text` names from the crate root (`a::b` for a path written from the `crate`
/// keyword), `super` paths resolved against `module`, and each member of a `use` group.
fn named_paths(module: &str, text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let path_at = |rest: &str| -> String {
        rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect()
    };
    for (at, _) in text.match_indices("crate::") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            paths.extend(group.split(',').map(|p| path_at(p.trim())).filter(|p| !p.is_empty()));
        } else {
            paths.push(path_at(rest));
        }
    }
    let parent: Vec<&str> = module.split("::").filter(|p| !p.is_empty()).collect();
    for (at, _) in text.match_indices("super::") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') || parent.is_empty() {
            continue;
        }
        // A doubled `super` climbs twice (the inner one is skipped above: it follows a `:`).
        let (mut rest, mut up) = (&text[at + "super::".len()..], 1);
        while let Some(r) = rest.strip_prefix("super::") {
            (rest, up) = (r, up + 1);
        }
        let base = parent[..parent.len().saturating_sub(up)].join("::");
        let rest = path_at(rest);
        paths.push(if base.is_empty() { rest } else { format!("{base}::{rest}") });
    }
    paths.retain(|p| !p.is_empty());
    paths
}

/// `text` up to its first inline test module (`#[cfg(test)]` then `mod name {`); a test module in
/// a file of its own (`mod tests;`) is a module like any other.
fn without_inline_tests(text: &str) -> &str {
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]\nmod ") {
        let at = from + at;
        let line = text[at..].lines().nth(1).unwrap_or_default();
        if line.trim_end().ends_with('{') {
            return &text[..at];
        }
        from = at + 1;
    }
    text
}

/// The longest module that `path` starts with (`gemm::Dims` is in `gemm`); `""` (the root) for
/// an item of the crate root.
fn module_named<'a>(files: &'a BTreeMap<String, PathBuf>, path: &str) -> Option<&'a str> {
    let parts: Vec<&str> = path.trim_end_matches(':').split("::").filter(|p| !p.is_empty()).collect();
    (0..=parts.len()).rev().find_map(|n| files.get_key_value(&parts[..n].join("::")).map(|(k, _)| k.as_str()))
}

/// The root's `pub use` re-exports, item name to the module path it comes from (`pub use
/// error::DataError;` maps `DataError` to `error`): a file naming `DataError` from the crate root
/// imports `error.rs`, not the root, which only forwards the name.
fn root_reexports(root: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for (at, _) in root.match_indices("pub use ") {
        let statement = root[at + "pub use ".len()..].split(';').next().unwrap_or_default();
        for (path, name) in use_tree("", statement) {
            if let Some((module, _)) = path.rsplit_once("::") {
                names.insert(name, module.to_string());
            }
        }
    }
    names
}

/// The `(full path, name bound)` pairs of a `use` tree such as `a::{b, c::{d as e}}`.
fn use_tree(prefix: &str, tree: &str) -> Vec<(String, String)> {
    let tree = tree.trim();
    let join = |p: &str| if prefix.is_empty() { p.to_string() } else { format!("{prefix}::{p}") };
    match tree.find('{') {
        Some(open) => {
            let base = join(tree[..open].trim().trim_end_matches("::"));
            let inner = tree[open + 1..].trim_end().strip_suffix('}').unwrap_or(&tree[open + 1..]);
            // Split the group at its own commas, not those of nested groups.
            let (mut depth, mut start, mut pairs) = (0, 0, Vec::new());
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        pairs.extend(use_tree(&base, &inner[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            pairs.extend(use_tree(&base, &inner[start..]));
            pairs
        }
        None if tree.is_empty() || tree == "self" || tree.ends_with('*') => Vec::new(),
        None => {
            let (path, alias) = match tree.split_once(" as ") {
                Some((path, alias)) => (path.trim(), Some(alias.trim())),
                None => (tree, None),
            };
            let name = alias.unwrap_or_else(|| path.rsplit("::").next().unwrap_or(path));
            vec![(join(path), name.to_string())]
        }
    }
}

impl Graph {
    /// Reads every `.rs` file under `src`; each file's unit tests (a `#[cfg(test)]` module at its
    /// end) are left out: a test may use what it tests from anywhere.
    pub fn of_crate(src: &Path) -> Result<Graph> {
        let mut paths = Vec::new();
        rust_files(src, &mut paths)?;
        let mut graph = Graph::default();
        for path in &paths {
            if let Some(module) = module_of(src, path) {
                graph.files.insert(module, path.clone());
            }
        }
        let top: Vec<String> = graph.files.keys().filter(|m| !m.is_empty() && !m.contains("::")).cloned().collect();
        let root_text = match graph.files.get("") {
            Some(root) => std::fs::read_to_string(root).with_context(|| format!("reading {}", root.display()))?,
            None => String::new(),
        };
        let reexports = root_reexports(&root_text);
        for (module, path) in &graph.files {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let text = without_inline_tests(&text);
            let mut imports = BTreeSet::new();
            for named in named_paths(module, text) {
                let first = named.split("::").next().unwrap_or_default();
                let named = match reexports.get(first) {
                    Some(from) if !graph.files.contains_key(first) => from.clone(),
                    _ => named,
                };
                if let Some(target) = module_named(&graph.files, &named).filter(|t| t != module) {
                    imports.insert(target.to_string());
                }
            }
            if module.is_empty() {
                // The root names its modules without the `crate` keyword.
                for m in &top {
                    if text.contains(&format!("{m}::")) {
                        imports.insert(m.clone());
                    }
                }
            }
            graph.imports.insert(module.clone(), imports);
        }
        Ok(graph)
    }

    /// Every set of two or more files that import each other around a circle (Tarjan's strongly
    /// connected components), each sorted.
    pub fn circles(&self) -> Vec<Vec<String>> {
        struct Search<'a> {
            graph: &'a Graph,
            index: BTreeMap<&'a str, usize>,
            low: BTreeMap<&'a str, usize>,
            stack: Vec<&'a str>,
            found: Vec<Vec<String>>,
        }
        impl<'a> Search<'a> {
            fn visit(&mut self, v: &'a str) {
                let i = self.index.len();
                self.index.insert(v, i);
                self.low.insert(v, i);
                self.stack.push(v);
                for w in self.graph.imports.get(v).into_iter().flatten() {
                    let w = w.as_str();
                    if !self.index.contains_key(w) {
                        self.visit(w);
                        let low = self.low[v].min(self.low[w]);
                        self.low.insert(v, low);
                    } else if self.stack.contains(&w) {
                        let low = self.low[v].min(self.index[w]);
                        self.low.insert(v, low);
                    }
                }
                if self.low[v] == self.index[v] {
                    let at = self.stack.iter().rposition(|&m| m == v).unwrap_or(0);
                    let mut circle: Vec<String> = self.stack.drain(at..).map(String::from).collect();
                    if circle.len() > 1 {
                        circle.sort();
                        self.found.push(circle);
                    }
                }
            }
        }
        let mut search =
            Search { graph: self, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
        for v in self.imports.keys() {
            if !search.index.contains_key(v.as_str()) {
                search.visit(v);
            }
        }
        search.found
    }

    /// Imports that run up a crate's declared order of top-level modules (`order[0]` lowest):
    /// `(importer, imported)`. The root counts as the top.
    pub fn upward_imports(&self, order: &[String]) -> Vec<(String, String)> {
        let rank = |module: &str| -> usize {
            let top = module.split("::").next().unwrap_or_default();
            if top.is_empty() { order.len() } else { order.iter().position(|m| m == top).unwrap_or(order.len()) }
        };
        let mut upward = Vec::new();
        for (from, targets) in &self.imports {
            for to in targets {
                let same_top = from.split("::").next() == to.split("::").next() && !from.is_empty();
                if !same_top && rank(to) >= rank(from) {
                    upward.push((from.clone(), to.clone()));
                }
            }
        }
        upward
    }
}

/// The top-level modules a crate root declares, in order (`mod x;`, `pub mod x;`).
pub fn declared_order(root: &str) -> Vec<String> {
    root.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix("pub mod ").or_else(|| line.strip_prefix("mod "))?;
            rest.strip_suffix(';').map(str::to_string)
        })
        .collect()
}

/// What `cargo xtask layers` finds wrong in the workspace at `root`: one line per circle or
/// upward import, empty when the invariants hold.
pub fn violations(root: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .with_context(|| format!("reading {}", root.join("crates").display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("src")))
        .filter(|src| src.is_dir())
        .collect();
    crates.push(root.join("xtask/src"));
    crates.sort();
    for src in crates {
        let name = src.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let graph = Graph::of_crate(&src)?;
        for circle in graph.circles() {
            let named = |m: &String| if m.is_empty() { "(root)".to_string() } else { m.clone() };
            let edges: Vec<String> = circle
                .iter()
                .flat_map(|from| {
                    graph.imports[from]
                        .iter()
                        .filter(|to| circle.contains(to))
                        .map(move |to| format!("{} -> {}", named(from), named(to)))
                })
                .collect();
            found.push(format!("{name}: files import each other around a circle: {}", edges.join(", ")));
        }
        if name == "fer-kernels" {
            let lib = std::fs::read_to_string(src.join("lib.rs"))
                .with_context(|| format!("reading {}", src.join("lib.rs").display()))?;
            for (from, to) in graph.upward_imports(&declared_order(&lib)) {
                let to = if to.is_empty() { "the crate root".to_string() } else { to };
                found.push(format!("{name}: {from} imports {to}, declared above it in lib.rs"));
            }
        }
    }
    Ok(found)
}

/// `cargo xtask layers`.
pub fn run(root: &Path) -> Result<()> {
    let found = violations(root)?;
    if found.is_empty() {
        println!("no circles of files in any crate; fer-kernels' modules import only modules below them");
        return Ok(());
    }
    for line in &found {
        println!("{line}");
    }
    anyhow::bail!("{} architecture invariant(s) broken (docs/ARCHITECTURE.md)", found.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(files: &[(&str, &str)]) -> Graph {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("dirs");
            std::fs::write(path, text).expect("write");
        }
        Graph::of_crate(dir.path()).expect("reads")
    }

    #[test]
    fn finds_a_circle_through_use_groups_super_and_doc_links_but_not_through_tests() {
        let g = graph(&[
            ("lib.rs", "pub mod a;\npub mod b;\nmod c;\n"),
            ("a.rs", "use crate::{b::Thing, c};\n"),
            ("b.rs", "/// See [`crate::c::helper`].\npub struct Thing;\n"),
            ("c/mod.rs", "mod d;\n"),
            ("c/d.rs", "use super::super::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n"),
        ]);
        assert_eq!(g.imports["a"], BTreeSet::from(["b".to_string(), "c".to_string()]));
        assert_eq!(g.imports["c::d"], BTreeSet::from(["a".to_string()]));
        // a -> b -> c (doc link); c::d -> a, but c (its parent) imports nothing: no circle yet.
        assert!(g.circles().is_empty(), "{:?}", g.circles());
        let g = graph(&[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            ("a.rs", "pub fn f() { crate::b::g() }\n"),
            ("b.rs", "pub fn g() {}\npub fn h() { super::a::f() }\n"),
        ]);
        assert_eq!(g.circles(), vec![vec!["a".to_string(), "b".to_string()]]);
    }

    #[test]
    fn an_import_of_a_module_declared_later_or_of_the_root_runs_upward() {
        let root = "pub mod low;\npub mod high;\npub fn top() { high::f() }\n";
        let g = graph(&[
            ("lib.rs", root),
            ("low.rs", "pub fn f() { crate::high::f(); crate::top() }\n"),
            ("high/mod.rs", "mod inner;\npub fn f() { crate::low::f() }\n"),
            ("high/inner.rs", "use super::f;\nuse crate::low::f as g;\n"),
        ]);
        let order = declared_order(root);
        assert_eq!(order, ["low", "high"]);
        assert_eq!(
            g.upward_imports(&order),
            vec![("low".to_string(), "".to_string()), ("low".to_string(), "high".to_string())]
        );
    }

    #[test]
    fn a_name_the_root_reexports_is_an_import_of_the_module_that_defines_it() {
        let root = "pub use error::Error;\npub use \
            model::{Model, params::{Count, Shape as Dims}};\npub use inner::deep::Thing;\n";
        let names = root_reexports(root);
        assert_eq!(names["Error"], "error");
        assert_eq!(names["Model"], "model");
        assert_eq!(names["Count"], "model::params");
        assert_eq!(names["Dims"], "model::params");
        assert_eq!(names["Thing"], "inner::deep");
        let g = graph(&[
            ("lib.rs", "mod error;\nmod model;\npub use error::Error;\npub use model::Model;\n"),
            ("error.rs", "pub struct Error;\n"),
            ("model.rs", "use crate::Error;\npub struct Model;\n"),
        ]);
        assert_eq!(g.imports["model"], BTreeSet::from(["error".to_string()]));
        assert!(g.circles().is_empty(), "{:?}", g.circles());
    }

    #[test]
    fn the_workspace_keeps_its_invariants() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
        let found = violations(root).expect("the sources read");
        assert!(found.is_empty(), "{}", found.join("\n"));
    }
}
