//! Fuzz target: arbitrary bytes through the spreadsheet extractors (XLSX/XLSB, XLS, ODS; the first
//! byte picks which) must give text or an error, never a panic, a hang or unbounded memory.
#![no_main]

use conversa::domain::FileType;
use conversa::extract::{extract, Limits};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    common::tolerate_dependency_panics();
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let file_type = match pick % 3 {
        0 => FileType::Xlsx,
        1 => FileType::Xls,
        _ => FileType::Ods,
    };
    let _ = extract(file_type, rest, &Limits::default());
});
