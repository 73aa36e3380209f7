//! The layering of `raft-node`'s modules stays a graph without circles: the `RaftNode` handle
//! starts the tasks, each task refers only to the shared `node::types` leaf, and no module imports
//! one that imports it back. The test reads the sources and follows every `crate::<module>` and
//! `super::<module>` path outside test code.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name (`kv`, `node`, `node::apply`) of a source file below `src`.
fn module_of(relative: &Path) -> String {
    let parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p != "mod")
        .collect();
    parts.join("::")
}

/// The names following `prefix` in `code`, as module paths.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    code.match_indices(prefix)
        .map(|(at, _)| {
            code[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == ':')
                .collect::<String>()
        })
        .collect()
}

fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(f.strip_prefix(src).unwrap()))
        .collect();
    // The longest known module a path names (`node::types::Request` names `node::types`).
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|candidate| modules.contains(candidate))
    };
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(file.strip_prefix(src).unwrap());
        if module == "lib" || module.starts_with("bin") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let parent = module.rsplit_once("::").map(|(p, _)| p.to_string());
        let mut deps = BTreeSet::new();
        for path in paths_after(code, "crate::") {
            deps.extend(resolve(&path));
        }
        if let Some(parent) = &parent {
            for path in paths_after(code, "super::") {
                deps.extend(resolve(&format!("{parent}::{path}")).or_else(|| Some(parent.clone())));
            }
        }
        deps.remove(&module);
        graph.insert(module, deps);
    }
    graph
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        graph.contains_key("node::event_loop"),
        "the sources were read: {graph:?}"
    );
    assert!(
        graph["node::apply"].contains("node::types"),
        "the reader sees imports: {graph:?}"
    );
    for start in graph.keys() {
        let mut stack = vec![vec![start.clone()]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            for next in graph.get(path.last().unwrap()).into_iter().flatten() {
                assert!(next != start, "import circle: {} -> {next}", path.join(" -> "));
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
}

#[test]
fn each_task_refers_only_to_the_shared_types_of_the_node() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let tasks = ["node::event_loop", "node::apply", "node::snapshot_sender"];
    // The writes to storage are the event loop's own part: it drives them, nothing else may.
    let parts = [("node::persist", "node::event_loop")];
    let is_part = |module: &str| parts.iter().any(|(part, _)| *part == module);
    // A leaf of the node (it refers to no other module of the node, like the tick clock) may be
    // used by a task; another task may not, nor anything that reaches back into the node.
    let is_leaf = |module: &String| {
        !tasks.contains(&module.as_str())
            && !is_part(module)
            && graph
                .get(module)
                .is_some_and(|uses| !uses.iter().any(|m| m.starts_with("node")))
    };
    let owned_part = |task: &str, module: &str| parts.contains(&(module, task));
    for module in tasks.iter().chain(parts.iter().map(|(part, _)| part)) {
        let siblings: Vec<&String> = graph[*module]
            .iter()
            .filter(|m| m.starts_with("node") && *m != "node::types" && !is_leaf(m))
            .filter(|m| !owned_part(module, m))
            .collect();
        assert!(siblings.is_empty(), "{module} refers to {siblings:?}");
    }
    for (part, owner) in parts {
        let users: Vec<&String> = graph
            .iter()
            .filter(|(module, uses)| *module != owner && uses.contains(part))
            .map(|(module, _)| module)
            .collect();
        assert!(
            users.is_empty(),
            "{part} is {owner}'s alone, but {users:?} use it"
        );
    }
}
