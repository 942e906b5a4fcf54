//! Citations: the numbered passages a prompt carries — of files, and of memory (the user's other
//! conversations, with `CONVERSA_MEMORY=on`) — and the `[n]` markers of an answer that point at
//! them.
//!
//! The context step numbers every passage it sends (`[1]`, `[2]`, …, once across the prompt) and
//! asks the model to cite them. When the answer ends — finished, stopped or cut short — its
//! markers are read: `[2]`, `[1][3]` and `[1, 3]` count; markers inside code (spans and fenced
//! blocks) and numbers no passage carries do not. Each passage cited becomes a [`Citation`], in
//! order of first citation, with a short verbatim excerpt of the passage: the sentence that best
//! matches the claim the marker follows.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::domain::{Citation, FileId, MemorySource};
use crate::service::retrieval::terms;

/// The longest snippet, in characters.
pub const SNIPPET_CHARS: usize = 300;
/// The most citations one answer carries.
pub const MAX_CITATIONS: usize = 100;
/// The most digits a cited number may have.
const MAX_DIGITS: usize = 6;
/// How much of the answer before a marker is read as its claim, in characters.
const CLAIM_CHARS: usize = 600;

/// What the system prompt adds when the prompt carries numbered passages.
pub const INSTRUCTION: &str = "The text of the user's files is given in numbered passages: \
each starts with its number in square brackets, like [1]. When a statement in your answer draws \
on a passage, cite it right after the statement with its number in square brackets, like [2], or \
[1][3] for several. Cite only the numbers given, and only passages you used.";

/// What the system prompt adds when the prompt carries passages of memory.
pub const MEMORY_INSTRUCTION: &str = "Passages labelled as memory come from the user's other \
conversations and are numbered the same way. Use one only where it helps answer the question, \
say that it comes from an earlier conversation, and cite it by its number like any other passage.";

/// A numbered passage, as the prompt gives it to the model: of a file, or of memory (a message or
/// a file of another conversation).
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// Its number in the prompt (`[n]`).
    pub n: u32,
    /// The file it comes from (`None`: a message, of memory).
    pub file_id: Option<FileId>,
    /// The file's name.
    pub filename: Option<String>,
    /// The page it is on, when the file has pages.
    pub page: Option<u32>,
    /// The sheet it is on, when the file has sheets.
    pub sheet: Option<String>,
    /// Its text, as sent.
    pub text: String,
    /// The other conversation it comes from, when it is memory.
    pub memory: Option<MemorySource>,
}

/// The page or sheet a chunk label names: `page 7` → page 7, `sheet Revenue` → sheet
/// `Revenue`; anything else (`part 3`, none) → neither.
pub fn location(label: &str) -> (Option<u32>, Option<String>) {
    if let Some(n) = label.strip_prefix("page ") {
        return (n.parse().ok(), None);
    }
    if let Some(s) = label.strip_prefix("sheet ") {
        return (None, Some(s.to_owned()));
    }
    (None, None)
}

/// The header line of passage `n` with `label` (`[3] page 7`, or `[3]` with no label).
pub fn header(n: u32, label: &str) -> String {
    if label.is_empty() {
        format!("[{n}]")
    } else {
        format!("[{n}] {label}")
    }
}

/// The numbers an answer cites, each with the byte offset of its marker, in order, outside code.
pub fn markers(text: &str) -> Vec<(u32, usize)> {
    let mut out = Vec::new();
    // The fence that opened the code block we are in: its character and length.
    let mut fence: Option<(u8, usize)> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let run = |c: u8| trimmed.bytes().take_while(|b| *b == c).count();
        match fence {
            Some((c, len)) => {
                // A closing fence: the same character, at least as long, nothing after it.
                if indent < 4 && run(c) >= len && trimmed[run(c)..].trim().is_empty() {
                    fence = None;
                }
                continue;
            }
            None => {
                if indent < 4 {
                    if let Some(c) = [b'`', b'~'].into_iter().find(|c| run(*c) >= 3) {
                        fence = Some((c, run(c)));
                        continue;
                    }
                }
            }
        }
        scan_line(line, start, &mut out);
    }
    out
}

/// The markers of one line outside inline code spans.
fn scan_line(line: &str, base: usize, out: &mut Vec<(u32, usize)>) {
    let b = line.as_bytes();
    let runs = backtick_runs(b);
    // A span opened by a run of backticks ends at the next run of exactly as many; without one,
    // the backticks are plain text. The runs of each length are queued in order, so finding the
    // closing run never rescans the line: many unmatched runs stay linear.
    let mut by_len: HashMap<usize, VecDeque<usize>> = HashMap::new();
    for (k, &(_, len)) in runs.iter().enumerate() {
        by_len.entry(len).or_default().push_back(k);
    }
    let mut next_run = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'`' => {
                while runs.get(next_run).is_some_and(|&(start, _)| start < i) {
                    next_run += 1;
                }
                let Some(&(_, open)) = runs.get(next_run) else {
                    i += 1;
                    continue;
                };
                let closing = by_len.get_mut(&open).and_then(|same| {
                    while same.front().is_some_and(|&k| k <= next_run) {
                        same.pop_front();
                    }
                    same.front().copied()
                });
                i = match closing.and_then(|k| runs.get(k)) {
                    Some(&(start, len)) => start + len,
                    None => i + open,
                };
            }
            b'[' => match group(&b[i + 1..]) {
                Some((numbers, len)) => {
                    out.extend(numbers.into_iter().map(|n| (n, base + i)));
                    i += 1 + len;
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
}

/// The runs of backticks of a line: where each starts and how long it is.
fn backtick_runs(b: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'`' {
            let len = b[i..].iter().take_while(|c| **c == b'`').count();
            runs.push((i, len));
            i += len;
        } else {
            i += 1;
        }
    }
    runs
}

/// The numbers of a marker whose `[` was just read: `2]`, `1, 3]`; with the bytes read.
fn group(b: &[u8]) -> Option<(Vec<u32>, usize)> {
    let mut numbers = Vec::new();
    let mut i = 0;
    loop {
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > MAX_DIGITS {
            return None;
        }
        let n = std::str::from_utf8(&b[i..i + digits])
            .ok()?
            .parse::<u32>()
            .ok()?;
        numbers.push(n);
        i += digits;
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        match b.get(i) {
            Some(b']') => return Some((numbers, i + 1)),
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

/// The passages `answer` cites, in order of first citation, each once; numbers no passage
/// carries are left out.
pub fn citations(answer: &str, passages: &[Passage]) -> Vec<Citation> {
    if passages.is_empty() {
        return Vec::new();
    }
    let by_n: HashMap<u32, &Passage> = passages.iter().map(|p| (p.n, p)).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (n, at) in markers(answer) {
        if out.len() >= MAX_CITATIONS {
            break;
        }
        let Some(p) = by_n.get(&n) else {
            continue;
        };
        if !seen.insert(n) {
            continue;
        }
        out.push(Citation {
            n,
            file_id: p.file_id.clone(),
            filename: p.filename.clone(),
            page: p.page,
            sheet: p.sheet.clone(),
            snippet: snippet(&p.text, &claim(answer, at)),
            memory: p.memory.clone(),
        });
    }
    out
}

/// The largest char boundary of `s` at or below `i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The statement a marker at byte `at` follows: the answer's text since the sentence before it,
/// bounded, without the markers right before this one.
fn claim(answer: &str, at: usize) -> String {
    let end = floor_boundary(answer, at);
    let from = answer[..end]
        .char_indices()
        .rev()
        .nth(CLAIM_CHARS)
        .map_or(0, |(i, _)| i);
    let mut window = answer[from..end].trim_end();
    // Markers just before this one (`[1][3]`) belong to the same statement.
    while window.ends_with(']') {
        match window.rfind('[') {
            Some(i)
                if group(&window.as_bytes()[i + 1..])
                    .is_some_and(|(_, len)| i + 1 + len == window.len()) =>
            {
                window = window[..i].trim_end();
            }
            _ => break,
        }
    }
    let body = window.trim_end_matches(['.', '!', '?', ':', ';', ',']);
    let start = body.rfind(['.', '!', '?', '\n']).map_or(0, |i| i + 1);
    body[start..].trim().to_owned()
}

/// The sentences of `text`: byte ranges ending after `.`, `!` or `?` before white space, or at
/// a line break.
fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|(_, n)| *n);
        let end = match c {
            '\n' => Some(i),
            '.' | '!' | '?' if next.is_none_or(char::is_whitespace) => Some(i + c.len_utf8()),
            _ => None,
        };
        if let Some(end) = end {
            if !text[start..end].trim().is_empty() {
                out.push((start, end));
            }
            start = i + c.len_utf8();
        }
    }
    if !text[start..].trim().is_empty() {
        out.push((start, text.len()));
    }
    out
}

/// A verbatim excerpt of `passage`, at most [`SNIPPET_CHARS`] characters: the sentence sharing
/// the most words with `claim` (the first one when none does), and the sentences after it while
/// they fit.
pub fn snippet(passage: &str, claim: &str) -> String {
    let wanted: HashSet<String> = terms(claim).into_iter().collect();
    let spans = sentences(passage);
    let Some(first) = spans.first() else {
        return String::new();
    };
    let mut best = (*first, 0);
    for &(s, e) in &spans {
        let found: HashSet<String> = terms(&passage[s..e])
            .into_iter()
            .filter(|t| wanted.contains(t))
            .collect();
        if found.len() > best.1 {
            best = ((s, e), found.len());
        }
    }
    let ((s, mut e), _) = best;
    let after = e;
    for &(_, next_end) in spans.iter().filter(|(ns, _)| *ns >= after) {
        if passage[s..next_end].trim().chars().count() > SNIPPET_CHARS {
            break;
        }
        e = next_end;
    }
    let text = passage[s..e].trim();
    if text.chars().count() <= SNIPPET_CHARS {
        return text.to_owned();
    }
    // One long sentence: its first characters, ending at a word when one ends late enough.
    let cut = floor_boundary(
        text,
        text.char_indices()
            .nth(SNIPPET_CHARS)
            .map_or(text.len(), |(i, _)| i),
    );
    let head = &text[..cut];
    match head.rfind(char::is_whitespace) {
        Some(i) if head[..i].chars().count() >= SNIPPET_CHARS / 2 => {
            head[..i].trim_end().to_owned()
        }
        _ => head.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(n: u32, page: Option<u32>, text: &str) -> Passage {
        Passage {
            n,
            file_id: Some(FileId::from(format!("f{n}"))),
            filename: Some("report.pdf".into()),
            page,
            sheet: None,
            text: text.into(),
            memory: None,
        }
    }

    fn numbers(text: &str) -> Vec<u32> {
        markers(text).into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn markers_single_repeated_grouped_and_listed_are_read_in_order() {
        assert_eq!(numbers("Sales grew [2]. Costs fell [1][3]."), [2, 1, 3]);
        assert_eq!(numbers("Both [1, 3] and [ 4 ,5 ]."), [1, 3, 4, 5]);
        assert_eq!(numbers("Again [2] and [2]."), [2, 2]);
        let (n, at) = markers("ab [7]")[0];
        assert_eq!((n, at), (7, 3), "the offset is the marker's `[`");
    }

    #[test]
    fn what_is_not_a_marker_is_ignored() {
        assert_eq!(
            numbers("[a] [] [1a] [1,] [,1] [1 2] [-1] [1.5] [1234567] ][ [[9]"),
            [9]
        );
        assert_eq!(numbers("Émoji ✓ [3] après"), [3], "multi-byte text around");
    }

    #[test]
    fn markers_in_code_are_ignored() {
        let text = "Use `a[1]` here [2].\n\
                    ```rust\nlet x = v[3];\n```\n\
                    ~~~~\n[4]\n```\nstill code [5]\n~~~~\n\
                    ``x ` [6] `` after [7] and a stray ` tick [8].\n    \
                    ```\nafter an indented fence-like line [9]";
        assert_eq!(numbers(text), [2, 7, 8, 9]);
    }

    #[test]
    fn code_spans_close_at_the_next_run_of_the_same_length() {
        // The first "`" closes at the next single "`", past the "``" and "```" inside it; the last
        // "``" has no partner and is plain text.
        assert_eq!(numbers("`a`` [1] ``` [2] ` [3] `` [4]"), [3, 4]);
        // Unmatched runs of every length are plain text, and the markers between them count.
        let mut text = String::new();
        for len in 1..=300 {
            text.push_str(&"`".repeat(len));
            text.push_str(&format!(" [{len}] "));
        }
        let expected: Vec<u32> = (1..=300).collect();
        assert_eq!(numbers(&text), expected);
        // A run closes only the span its own length opened; the runs between are skipped.
        assert_eq!(numbers("`` ` [1] ``` `` [2] ` [3] `"), [2]);
    }

    #[test]
    fn an_unclosed_fence_hides_the_rest() {
        assert_eq!(numbers("see [1]\n```\ncode [2]\n"), [1]);
    }

    #[test]
    fn citations_are_the_passages_cited_once_in_order_of_first_citation() {
        let ps = vec![
            passage(1, Some(1), "Intro text."),
            passage(2, Some(7), "The canary sings at dawn. Other things happen."),
            passage(3, None, "Notes."),
        ];
        let got = citations("Dawn song [2]. Intro [1][2]. Nothing [9] or [0].", &ps);
        let ns: Vec<u32> = got.iter().map(|c| c.n).collect();
        assert_eq!(ns, [2, 1], "out-of-range numbers are left out");
        assert_eq!(got[0].page, Some(7));
        assert_eq!(got[0].file_id, Some(FileId::from("f2")));
        assert_eq!(got[0].filename.as_deref(), Some("report.pdf"));
        assert_eq!(got[0].memory, None);
        assert!(got[0].snippet.starts_with("The canary sings at dawn."));
        assert!(citations("no markers", &ps).is_empty());
        assert!(citations("[1]", &[]).is_empty());
    }

    #[test]
    fn a_cited_passage_of_memory_names_its_conversation() {
        let source = MemorySource {
            conversation_id: "c-a".into(),
            message_id: Some("m-a".into()),
            title: "Moving house".into(),
        };
        let ps = vec![
            passage(1, Some(2), "File text."),
            Passage {
                n: 2,
                file_id: None,
                filename: None,
                page: None,
                sheet: None,
                text: "Noted. The gate code is 4417 since May.".into(),
                memory: Some(source.clone()),
            },
        ];
        let got = citations("The gate code is 4417 [2]; see also [1].", &ps);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].n, 2);
        assert_eq!(
            (got[0].file_id.as_ref(), got[0].filename.as_ref()),
            (None, None)
        );
        assert_eq!(got[0].memory.as_ref(), Some(&source));
        assert_eq!(got[0].snippet, "The gate code is 4417 since May.");
        assert_eq!(got[1].memory, None, "a file passage is not memory");
        let json = serde_json::to_value(&got).unwrap();
        assert_eq!(
            json[0],
            serde_json::json!({"n": 2, "file_id": null, "filename": null, "page": null,
                "sheet": null, "snippet": "The gate code is 4417 since May.",
                "memory": {"conversation_id": "c-a", "message_id": "m-a", "title": "Moving house"}})
        );
        assert!(json[1].get("memory").is_none(), "{json}");
    }

    #[test]
    fn the_snippet_is_the_sentence_the_claim_draws_on() {
        let text = "Page seven covers logistics. Routes are planned weekly. \
                    The launch code is ZEBRA-7731 and must stay secret. Warehouses open at six.";
        let ps = vec![passage(4, Some(7), text)];
        let got = citations("Fine.\nThe launch code is ZEBRA-7731 [4].", &ps);
        assert!(
            got[0].snippet.starts_with("The launch code is ZEBRA-7731"),
            "{}",
            got[0].snippet
        );
        assert!(text.contains(&got[0].snippet), "verbatim");
        assert_eq!(claim("A. The code is X [1][4]", 20), "The code is X");
    }

    #[test]
    fn snippets_are_bounded_on_char_boundaries() {
        let long = "é".repeat(1_000);
        let s = snippet(&long, "anything");
        assert_eq!(s.chars().count(), SNIPPET_CHARS);
        let words = "mot ".repeat(500);
        let s = snippet(&words, "mot");
        assert!(
            s.chars().count() <= SNIPPET_CHARS && s.ends_with("mot"),
            "{s}"
        );
        let many = "One sentence here. ".repeat(100);
        let s = snippet(&many, "sentence");
        assert!(s.chars().count() <= SNIPPET_CHARS);
        assert!(many.contains(s.as_str()));
        assert_eq!(snippet("", "x"), "");
        assert_eq!(snippet("  \n ", "x"), "");
    }

    #[test]
    fn huge_answers_are_read_whole_and_citations_stay_bounded() {
        let ps: Vec<Passage> = (1..=500).map(|n| passage(n, None, "Text.")).collect();
        let mut answer = String::new();
        for n in 1..=500 {
            answer.push_str(&format!("Claim number {n} goes here [{n}]. "));
        }
        answer.push_str(&"x".repeat(1_000_000));
        answer.push_str(" last [1]");
        let got = citations(&answer, &ps);
        assert_eq!(got.len(), MAX_CITATIONS);
        assert_eq!(got[99].n, 100);
        let tail = format!("{} [3]", "word ".repeat(200_000));
        assert_eq!(citations(&tail, &ps)[0].n, 3);
    }

    #[test]
    fn labels_name_a_page_or_a_sheet() {
        assert_eq!(location("page 7"), (Some(7), None));
        assert_eq!(
            location("sheet Revenue 2024"),
            (None, Some("Revenue 2024".into()))
        );
        assert_eq!(location("part 3"), (None, None));
        assert_eq!(location(""), (None, None));
        assert_eq!(header(3, "page 7"), "[3] page 7");
        assert_eq!(header(1, ""), "[1]");
    }
}
