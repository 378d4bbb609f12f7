//! The core's modules import only downward: each module names only modules before it in
//! [`LAYERS`], so the dependency graph has no cycle and a newcomer can read the tree top-down
//! (the layers are written down in `src/lib.rs`'s module docs).

use std::fs;
use std::path::Path;

/// Every module of the core, in the order they may depend on each other: a module uses only
/// modules before it. Leaves first; `lib.rs` (the crate root) may use any.
const LAYERS: &[&str] = &[
    "sync",
    "clock",
    "config",
    "error",
    "options",
    "weigh",
    "keys",
    "stats",
    "tally",
    "wait", // leaves
    "expiry",
    "store",
    "concurrency",
    "flight",
    "shared",
    "remote",
    "cache",
    "registry",
];

/// The `crate::…` paths in code (not comments) of a file, as the first segment after `crate::`.
fn uses(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            found.push((n + 1, name));
        }
    }
    found
}

fn module_of(path: &Path, src: &Path) -> String {
    let rel = path.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(file, &src);
        if module == "lib" {
            continue;
        }
        let mine = rank(&module).unwrap_or_else(|| panic!("{module} is missing from LAYERS"));
        for (line, used) in uses(&fs::read_to_string(file).unwrap()) {
            match rank(&used) {
                Some(r) if r < mine || used == module => {}
                Some(_) => wrong.push(format!("{}:{line}: {module} uses {used}", file.display())),
                None => wrong.push(format!(
                    "{}:{line}: {module} uses crate::{used}, not a module: name the module it is in",
                    file.display()
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "imports that go up or sideways:\n{}", wrong.join("\n"));
}
