//! The docs book's links: every relative link in `docs/` and the README points at a file that
//! exists, every `#anchor` into a page names one of its headings, every `{{#include}}` names a
//! file, and `docs/SUMMARY.md` lists every page. (`mdbook build docs` builds the book in CI.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The pages checked: the README and every Markdown file in `docs/`.
fn pages() -> Vec<PathBuf> {
    let docs = workspace().join("docs");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&docs)
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.push(workspace().join("README.md"));
    pages.sort();
    pages
}

/// The targets of the Markdown links `[text](target)` in `text`, outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                found.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    found
}

/// A heading's anchor as mdBook and GitHub make it.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(page: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(page).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn every_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("a page");
        let dir = page.parent().expect("a folder");
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = link.split_once('#').unwrap_or((link.as_str(), ""));
            let target = if path.is_empty() {
                page.clone()
            } else {
                dir.join(path)
            };
            if !target.exists() {
                broken.push(format!("{}: {link} (no such file)", page.display()));
                continue;
            }
            if !anchor.is_empty()
                && target.extension().is_some_and(|x| x == "md")
                && !anchors(&target).contains(anchor)
            {
                broken.push(format!("{}: {link} (no such heading)", page.display()));
            }
        }
        for include in text.split("{{#include ").skip(1) {
            let path = include.split("}}").next().unwrap_or_default().trim();
            checked += 1;
            if !dir.join(path).exists() {
                broken.push(format!("{}: include {path} (no such file)", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 40, "only {checked} links found: is the scan working?");
}

#[test]
fn the_books_summary_lists_every_page() {
    let summary = std::fs::read_to_string(workspace().join("docs/SUMMARY.md")).expect("docs/SUMMARY.md");
    let listed: BTreeSet<String> = links(&summary).into_iter().collect();
    for page in pages() {
        let name = page
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if page.parent().is_some_and(|d| d.ends_with("docs")) && name != "SUMMARY.md" {
            assert!(listed.contains(&name), "docs/SUMMARY.md does not list {name}");
        }
    }
}

#[test]
fn the_link_scan_sees_links_and_skips_code() {
    let text = "see [a](a.md#x) and [b](https://b)\n```\n[c](c.md)\n```\n[d](d.md)";
    assert_eq!(links(text), vec!["a.md#x", "https://b", "d.md"]);
    assert_eq!(
        slug("What metrics cost (2026-12-02)"),
        "what-metrics-cost-2026-12-02"
    );
}
