//! Shared by the fuzz targets: which panics count as crashes.
//!
//! libFuzzer's harness turns every panic into an abort (a crash), even one that
//! `conversa::extract::extract` catches. A panic inside a dependency's parser (pdf-extract, lopdf,
//! calamine, …) is caught in production and the file is refused as damaged, so here it is
//! reported once per source location and tolerated; a panic anywhere else (Conversa's own code,
//! the standard library) stays a crash. `FUZZ_STRICT_PANICS=1` makes every panic a crash, to hunt
//! for upstream bugs.

use std::collections::HashSet;
use std::sync::{Mutex, Once};

static INSTALL: Once = Once::new();
static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Installs the panic policy (once; call at the start of every input).
pub fn tolerate_dependency_panics() {
    INSTALL.call_once(|| {
        if std::env::var_os("FUZZ_STRICT_PANICS").is_some_and(|v| v == "1") {
            return;
        }
        // libFuzzer's hook (print, then abort) is in place by the first input.
        let crash = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let Some(loc) = info.location() else {
                return crash(info);
            };
            let file = loc.file();
            // vendor/: third-party crates kept in the repository with a local fix (calamine).
            let dependency = file.contains("/.cargo/registry/")
                || file.contains("/.cargo/git/")
                || file.contains("/vendor/");
            if !dependency {
                return crash(info);
            }
            let at = format!("{file}:{}", loc.line());
            if let Ok(mut seen) = SEEN.lock() {
                if seen.get_or_insert_with(HashSet::new).insert(at.clone()) {
                    eprintln!(
                        "fuzz: tolerated a dependency panic (caught by extract) at {at}: {info}"
                    );
                }
            }
        }));
    });
}
