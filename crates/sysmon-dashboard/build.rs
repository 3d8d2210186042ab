//! Embeds the front end into the binary so that the dashboard is self-contained
//! (it must work on a LAN with no internet, and no CDN is ever used).
//!
//! * `web/src/**` are the dashboard's own assets (plain JS modules, CSS, HTML).
//! * uPlot comes from npm: when `web/node_modules/uplot` is missing this script
//!   runs `npm ci --no-audit --no-fund` in `web/` (the versions are pinned by the
//!   committed `package-lock.json`); its dist files are embedded, never committed.
//!
//! The output is `$OUT_DIR/assets.rs`: a static table of
//! `(url path, content type, bytes)` built with `include_bytes!`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Third-party files embedded from `web/node_modules`, served under `/assets/vendor/`.
const VENDOR: &[(&str, &str)] = &[
    ("uplot/dist/uPlot.esm.js", "vendor/uPlot.esm.js"),
    ("uplot/dist/uPlot.min.css", "vendor/uPlot.min.css"),
    ("uplot/LICENSE", "vendor/uPlot.LICENSE.txt"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let web = manifest.join("web");
    println!("cargo:rerun-if-changed=web/package.json");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-changed=web/src");
    println!("cargo:rerun-if-changed=web/node_modules/uplot/package.json");

    if !web.join("node_modules/uplot/package.json").exists() {
        npm_ci(&web);
    }

    let mut files: Vec<(String, PathBuf)> = Vec::new();
    collect(&web.join("src"), &web.join("src"), &mut files);
    for (from, to) in VENDOR {
        let p = web.join("node_modules").join(from);
        if !p.exists() {
            panic!(
                "{} is missing after `npm ci` in {}: delete web/node_modules and build again",
                p.display(),
                web.display()
            );
        }
        println!("cargo:rerun-if-changed={}", p.display());
        files.push((to.to_string(), p));
    }
    files.sort();

    let mut out = String::from(
        "/// Every embedded asset: (path under `/assets/`, content type, bytes).\n\
         pub static ASSETS: &[(&str, &str, &[u8])] = &[\n",
    );
    for (rel, path) in &files {
        let _ = writeln!(
            out,
            "    ({rel:?}, {:?}, include_bytes!({:?})),",
            content_type(rel),
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("assets.rs");
    std::fs::write(&dest, out).expect("writing assets.rs");
}

fn npm_ci(web: &Path) {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let status = Command::new(npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(web)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`npm ci --no-audit --no-fund` in {} failed ({s}); the dashboard's chart library \
             (uPlot) comes from the npm registry",
            web.display()
        ),
        Err(e) => panic!(
            "cannot run npm ({e}): install Node.js and npm (Debian: apt-get install nodejs npm); \
             the dashboard's chart library (uPlot) is installed from the npm registry by \
             `npm ci` in {}",
            web.display()
        ),
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, path));
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}
