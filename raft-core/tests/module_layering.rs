//! The layering of `raft-core`'s modules stays a graph without circles: no module imports one that
//! imports it back (the rule files depend on `core` and on leaves, `core` on leaves only). The
//! test reads the sources and follows every `crate::<module>` path outside test code.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules each source file of `src` refers to through `crate::<module>`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
            continue;
        };
        if path.extension().is_none_or(|e| e != "rs") || name == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut deps = BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let module: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !module.is_empty() && module != name {
                deps.insert(module);
            }
        }
        graph.insert(name, deps);
    }
    graph
}

/// A circle through `start`, if there is one.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in graph.get(last).into_iter().flatten() {
            if next == start {
                let mut circle = path.clone();
                circle.push(next.clone());
                return Some(circle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 20, "the sources were read: {graph:?}");
    assert!(graph["election"].contains("core"), "the reader sees imports");
    for module in graph.keys() {
        if let Some(circle) = circle_through(&graph, module) {
            panic!("import circle: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_face_depends_on_no_rule_file() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let rules = [
        "election",
        "replication",
        "commit",
        "read",
        "snapshot",
        "transfer",
        "reconfiguration",
    ];
    for rule in rules {
        assert!(!graph["core"].contains(rule), "core imports the rule file {rule}");
    }
}
