//! Fuzz target: arbitrary bytes through the pdf extractor must give text or an error, never a
//! panic, a hang or unbounded memory.
#![no_main]

use conversa::domain::FileType;
use conversa::extract::{extract, Limits};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    common::tolerate_dependency_panics();
    let _ = extract(FileType::Pdf, data, &Limits::default());
});
