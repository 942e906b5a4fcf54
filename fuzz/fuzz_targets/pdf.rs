//! Fuzz target: arbitrary bytes through the pdf extractor must give text or an error, never a
//! panic, a hang or unbounded memory.
#![no_main]

use conversa::domain::FileType;
use conversa::extract::{extract, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = extract(FileType::Pdf, data, &Limits::default());
});
