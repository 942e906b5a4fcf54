//! Fuzz target: type detection, then extraction of whatever was detected, on arbitrary bytes and
//! names: never a panic.
#![no_main]

use conversa::extract::{detect, extract, Limits};
use libfuzzer_sys::fuzz_target;

mod common;

const NAMES: &[&str] = &[
    "a.pdf", "a.docx", "a.xlsx", "a.xls", "a.ods", "a.csv", "a.txt", "a.json", "a.png", "a",
];

fuzz_target!(|data: &[u8]| {
    common::tolerate_dependency_panics();
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let name = NAMES[usize::from(pick) % NAMES.len()];
    if let Ok(d) = detect(rest, name, None) {
        let _ = extract(d.file_type, rest, &Limits::default());
    }
});
