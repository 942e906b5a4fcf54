//! Markdown rendering shared by the extractors: pipe tables with escaped cells.

/// Escapes a cell for a pipe table: `|` and line breaks would break the row.
pub(super) fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.trim().chars() {
        match ch {
            '|' => out.push_str("\\|"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Renders rows as a pipe table: the first row is the header, every row padded to the widest.
/// Cells are escaped here.
pub(super) fn table(rows: &[Vec<String>], out: &mut String) {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    if width == 0 {
        return;
    }
    for (i, row) in rows.iter().enumerate() {
        out.push('|');
        for c in 0..width {
            out.push(' ');
            if let Some(text) = row.get(c) {
                out.push_str(&cell(text));
            }
            out.push_str(" |");
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for _ in 0..width {
                out.push_str(" --- |");
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_a_header_rule_and_escaped_cells() {
        let rows = vec![
            vec!["Name".to_owned(), "Note".to_owned()],
            vec!["a|b".to_owned(), "two\nlines".to_owned()],
            vec!["short".to_owned()],
        ];
        let mut out = String::new();
        table(&rows, &mut out);
        assert_eq!(
            out,
            "| Name | Note |\n| --- | --- |\n| a\\|b | two<br>lines |\n| short |  |\n"
        );
    }
}
