//! DOCX → Markdown-flavoured text, streaming over the WordprocessingML parts: headings as `#`,
//! numbered and bulleted lists, tables as pipe tables, hyperlinks as `[text](url)`, headers and
//! footers, footnotes and endnotes. Deleted revisions, field codes and fallback copies of drawings
//! are left out.

use std::collections::HashMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::markdown;
use super::zipsafe::Container;
use super::{ExtractError, Extracted, Limits};

pub(super) fn extract(bytes: &[u8], limits: &Limits) -> Result<Extracted, ExtractError> {
    let mut zip = Container::open(bytes, limits)?;
    let names = zip.names();
    let main = main_part(&mut zip, &names)?;
    let dir = main.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
    let rels_name = match main.rsplit_once('/') {
        Some((d, f)) => format!("{d}/_rels/{f}.rels"),
        None => format!("_rels/{main}.rels"),
    };
    let rels = match zip.text(&rels_name)? {
        Some(x) => parse_rels(&x),
        None => Vec::new(),
    };
    let part = |target: &str| resolve(&dir, target);
    let styles = match zip.text(&part("styles.xml"))? {
        Some(x) => parse_styles(&x),
        None => Styles::default(),
    };
    let numbering = match zip.text(&part("numbering.xml"))? {
        Some(x) => parse_numbering(&x),
        None => Numbering::default(),
    };
    let links: HashMap<String, String> = rels
        .iter()
        .filter(|r| r.kind.ends_with("/hyperlink"))
        .map(|r| (r.id.clone(), r.target.clone()))
        .collect();
    let ctx = Ctx {
        styles: &styles,
        numbering: &numbering,
        links: &links,
    };

    let body = zip.text(&main)?.ok_or_else(|| {
        ExtractError::Corrupt("the DOCX document has no main document part".into())
    })?;
    let mut counters = Counters::default();
    // The main part is most of the work: it reports progress by the share of its XML parsed.
    let body_blocks = parse_blocks(&body, &ctx, true)?;

    let mut headers = Vec::new();
    let mut footers = Vec::new();
    for r in &rels {
        let target = if r.kind.ends_with("/header") {
            &mut headers
        } else if r.kind.ends_with("/footer") {
            &mut footers
        } else {
            continue;
        };
        if let Some(x) = zip.text(&part(&r.target))? {
            let text = render(&parse_blocks(&x, &ctx, false)?, &mut Counters::default());
            if !text.trim().is_empty() && !target.contains(&text) {
                target.push(text);
            }
        }
    }

    let mut out = String::new();
    for h in &headers {
        out.push_str(h.trim_end());
        out.push_str("\n\n");
    }
    out.push_str(&render(&body_blocks, &mut counters));
    for (part_name, kind) in [("footnotes.xml", "footnote"), ("endnotes.xml", "endnote")] {
        let Some(x) = zip.text(&part(part_name))? else {
            continue;
        };
        for (id, text) in parse_notes(&x, kind, &ctx)? {
            push_block_sep(&mut out);
            out.push_str(&format!("[^{id}]: {text}"));
        }
    }
    for f in &footers {
        push_block_sep(&mut out);
        out.push_str(f.trim_end());
    }
    let text = out.trim().to_owned();
    Ok(Extracted {
        text,
        ..Default::default()
    })
}

fn push_block_sep(out: &mut String) {
    if !out.is_empty() && !out.ends_with("\n\n") {
        out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
    }
}

/// The main document part: from `[Content_Types].xml`'s override, else `word/document.xml`.
fn main_part(zip: &mut Container<'_>, names: &[String]) -> Result<String, ExtractError> {
    if let Some(ct) = zip.text("[Content_Types].xml")? {
        let mut reader = Reader::from_str(&ct);
        loop {
            match reader.read_event() {
                Ok(Event::Start(e) | Event::Empty(e)) if e.local_name().as_ref() == "Override" => {
                    let ctype = attr(&e, "ContentType").unwrap_or_default();
                    if ctype.contains("wordprocessingml.document.main")
                        || ctype.contains("ms-word.document.macroEnabled.main")
                        || ctype.contains("wordprocessingml.template.main")
                    {
                        if let Some(p) = attr(&e, "PartName") {
                            let p = p.trim_start_matches('/').to_owned();
                            if names.contains(&p) {
                                return Ok(p);
                            }
                        }
                    }
                }
                Ok(Event::Eof) | Err(_) => break,
                _ => {}
            }
        }
    }
    Ok("word/document.xml".to_owned())
}

/// `dir` + a relationship target, with `..` resolved; absolute targets start at the root.
fn resolve(dir: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if let Some(abs) = target.strip_prefix('/') {
        return abs.to_owned();
    } else if dir.is_empty() {
        Vec::new()
    } else {
        dir.split('/').collect()
    };
    for seg in target.split('/') {
        match seg {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// The value of the attribute whose local name is `name`, unescaped.
fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        (a.key.local_name().as_ref() == name).then(|| {
            quick_xml::escape::unescape(&a.value)
                .map(|v| v.into_owned())
                .unwrap_or_else(|_| a.value.to_string())
        })
    })
}

struct Rel {
    id: String,
    kind: String,
    target: String,
}

fn parse_rels(xml: &str) -> Vec<Rel> {
    let mut out = Vec::new();
    let mut reader = Reader::from_str(xml);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) if e.local_name().as_ref() == "Relationship" => {
                if let (Some(id), Some(kind), Some(target)) =
                    (attr(&e, "Id"), attr(&e, "Type"), attr(&e, "Target"))
                {
                    out.push(Rel { id, kind, target });
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

/// What a paragraph style means for the text: a heading level, a list.
#[derive(Default)]
struct Styles {
    heading: HashMap<String, u8>,
    num: HashMap<String, (String, u8)>,
    bullet_style: HashMap<String, bool>,
}

fn heading_from_name(name: &str) -> Option<u8> {
    let n = name.to_ascii_lowercase();
    if n == "title" {
        return Some(1);
    }
    let rest = n.strip_prefix("heading")?.trim();
    rest.parse::<u8>().ok().filter(|l| (1..=6).contains(l))
}

fn parse_styles(xml: &str) -> Styles {
    let mut s = Styles::default();
    let mut reader = Reader::from_str(xml);
    let mut cur: Option<String> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == "style" => {
                cur = attr(&e, "styleId");
            }
            Ok(Event::End(e)) if e.local_name().as_ref() == "style" => cur = None,
            Ok(Event::Start(e) | Event::Empty(e)) => {
                let Some(id) = cur.clone() else { continue };
                match e.local_name().as_ref() {
                    "name" => {
                        let name = attr(&e, "val").unwrap_or_default();
                        if let Some(l) = heading_from_name(&name) {
                            s.heading.insert(id, l);
                        } else {
                            let lower = name.to_ascii_lowercase();
                            if lower.starts_with("list bullet") {
                                s.bullet_style.insert(id, true);
                            } else if lower.starts_with("list number") {
                                s.bullet_style.insert(id, false);
                            }
                        }
                    }
                    "outlineLvl" => {
                        if let Some(l) = attr(&e, "val").and_then(|v| v.parse::<u8>().ok()) {
                            if l < 6 {
                                s.heading.entry(id).or_insert(l + 1);
                            }
                        }
                    }
                    "numId" => {
                        if let Some(n) = attr(&e, "val") {
                            s.num.entry(id).or_insert((String::new(), 0)).0 = n;
                        }
                    }
                    "ilvl" => {
                        if let Some(l) = attr(&e, "val").and_then(|v| v.parse::<u8>().ok()) {
                            s.num.entry(id).or_insert((String::new(), 0)).1 = l;
                        }
                    }
                    _ => {}
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    s
}

/// numId → whether each level is a bullet.
#[derive(Default)]
struct Numbering {
    bullet: HashMap<(String, u8), bool>,
}

fn parse_numbering(xml: &str) -> Numbering {
    let mut abstract_fmt: HashMap<(String, u8), bool> = HashMap::new();
    let mut num_to_abstract: HashMap<String, String> = HashMap::new();
    let mut reader = Reader::from_str(xml);
    let mut cur_abstract: Option<String> = None;
    let mut cur_level: Option<u8> = None;
    let mut cur_num: Option<String> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => match e.local_name().as_ref() {
                "abstractNum" => cur_abstract = attr(&e, "abstractNumId"),
                "lvl" => cur_level = attr(&e, "ilvl").and_then(|v| v.parse().ok()),
                "numFmt" => {
                    if let (Some(a), Some(l)) = (&cur_abstract, cur_level) {
                        let fmt = attr(&e, "val").unwrap_or_default();
                        abstract_fmt.insert((a.clone(), l), fmt == "bullet" || fmt == "none");
                    }
                }
                "num" => cur_num = attr(&e, "numId"),
                "abstractNumId" => {
                    if let (Some(n), Some(a)) = (&cur_num, attr(&e, "val")) {
                        num_to_abstract.insert(n.clone(), a);
                    }
                }
                _ => {}
            },
            Ok(Event::End(e)) => match e.local_name().as_ref() {
                "abstractNum" => cur_abstract = None,
                "lvl" => cur_level = None,
                "num" => cur_num = None,
                _ => {}
            },
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    let mut bullet = HashMap::new();
    for (num, abs) in &num_to_abstract {
        for l in 0..9u8 {
            if let Some(b) = abstract_fmt.get(&(abs.clone(), l)) {
                bullet.insert((num.clone(), l), *b);
            }
        }
    }
    Numbering { bullet }
}

struct Ctx<'a> {
    styles: &'a Styles,
    numbering: &'a Numbering,
    links: &'a HashMap<String, String>,
}

/// A paragraph or a table of the document body.
#[derive(Debug)]
enum Block {
    Para {
        text: String,
        heading: Option<u8>,
        /// (numId, level, bullet)
        list: Option<(String, u8, bool)>,
    },
    Table(Vec<Vec<String>>),
}

#[derive(Default)]
struct Para {
    text: String,
    style: Option<String>,
    num_id: Option<String>,
    ilvl: Option<u8>,
    outline: Option<u8>,
    /// Open hyperlinks: (target, where their text starts).
    links: Vec<(Option<String>, usize)>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Vec<String>>,
    row: Option<Vec<String>>,
    cell: Option<String>,
}

/// Streams one part (body, header, footer) into blocks.
/// The blocks of one part. With `report`, progress goes out paragraph by paragraph as the share of
/// `xml` consumed.
fn parse_blocks(xml: &str, ctx: &Ctx<'_>, report: bool) -> Result<Vec<Block>, ExtractError> {
    let mut blocks = Vec::new();
    let mut paras: Vec<Para> = Vec::new();
    let mut tables: Vec<Table> = Vec::new();
    // Depth counters of subtrees whose text is skipped, and whether we are inside a text run.
    let mut skip = 0usize;
    let mut in_text = false;
    let mut reader = Reader::from_str(xml);
    loop {
        let ev = reader.read_event().map_err(|_| {
            ExtractError::Corrupt(
                "the DOCX document is damaged (its XML is not well-formed)".into(),
            )
        })?;
        match ev {
            Event::Start(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if skip > 0 {
                    if matches!(name, "del" | "Fallback" | "instrText" | "delInstrText")
                        || name == "moveFrom"
                    {
                        skip += 1;
                    }
                    continue;
                }
                match name {
                    "del" | "moveFrom" | "Fallback" | "instrText" | "delInstrText" => skip = 1,
                    "p" => paras.push(Para::default()),
                    "t" => in_text = true,
                    "tbl" => tables.push(Table::default()),
                    "tr" => {
                        if let Some(t) = tables.last_mut() {
                            t.row = Some(Vec::new());
                        }
                    }
                    "tc" => {
                        if let Some(t) = tables.last_mut() {
                            t.cell = Some(String::new());
                        }
                    }
                    "hyperlink" => {
                        if let Some(p) = paras.last_mut() {
                            let target = attr(&e, "id")
                                .and_then(|id| ctx.links.get(&id).cloned())
                                .or_else(|| attr(&e, "anchor").map(|_| String::new()));
                            p.links.push((target, p.text.len()));
                        }
                    }
                    _ => para_prop(&e, name, paras.last_mut()),
                }
            }
            Event::Empty(e) => {
                if skip > 0 {
                    continue;
                }
                let name = e.local_name();
                let name = name.as_ref();
                let Some(p) = paras.last_mut() else { continue };
                match name {
                    "tab" if !in_ppr(&e) => p.text.push('\t'),
                    "br" | "cr" => p.text.push('\n'),
                    "noBreakHyphen" => p.text.push('-'),
                    "softHyphen" => {}
                    "footnoteReference" | "endnoteReference" => {
                        if let Some(id) = attr(&e, "id") {
                            p.text.push_str(&format!("[^{id}]"));
                        }
                    }
                    "sym" => {
                        if let Some(c) = attr(&e, "char")
                            .and_then(|h| u32::from_str_radix(&h, 16).ok())
                            .map(|c| if c >= 0xF000 { c - 0xF000 } else { c })
                            .and_then(char::from_u32)
                        {
                            if !c.is_control() {
                                p.text.push(c);
                            }
                        }
                    }
                    _ => para_prop(&e, name, Some(p)),
                }
            }
            Event::Text(t) if in_text && skip == 0 => {
                if let Some(p) = paras.last_mut() {
                    p.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) if in_text && skip == 0 => {
                if let Some(p) = paras.last_mut() {
                    if let Ok(Some(c)) = r.resolve_char_ref() {
                        p.text.push(c);
                    } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&r) {
                        p.text.push_str(s);
                    }
                }
            }
            Event::End(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if skip > 0 {
                    if matches!(
                        name,
                        "del" | "moveFrom" | "Fallback" | "instrText" | "delInstrText"
                    ) {
                        skip -= 1;
                    }
                    continue;
                }
                match name {
                    "t" => in_text = false,
                    "hyperlink" => {
                        if let Some(p) = paras.last_mut() {
                            if let Some((target, start)) = p.links.pop() {
                                close_link(p, target, start);
                            }
                        }
                    }
                    "p" => {
                        if report {
                            let at =
                                usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
                            super::report_progress(at, xml.len());
                        }
                        let Some(mut p) = paras.pop() else { continue };
                        while let Some((target, start)) = p.links.pop() {
                            close_link(&mut p, target, start);
                        }
                        let block = finish_para(p, ctx);
                        if let Some(outer) = paras.last_mut() {
                            // A paragraph inside a text box inside a paragraph: keep it inline.
                            if let Block::Para { text, .. } = block {
                                if !text.trim().is_empty() {
                                    if !outer.text.is_empty() && !outer.text.ends_with(' ') {
                                        outer.text.push(' ');
                                    }
                                    outer.text.push_str(text.trim());
                                }
                            }
                        } else if let Some(cell) = tables.last_mut().and_then(|t| t.cell.as_mut()) {
                            if let Block::Para { text, .. } = block {
                                let text = text.trim();
                                if !text.is_empty() {
                                    if !cell.is_empty() {
                                        cell.push('\n');
                                    }
                                    cell.push_str(text);
                                }
                            }
                        } else {
                            blocks.push(block);
                        }
                    }
                    "tc" => {
                        if let Some(t) = tables.last_mut() {
                            if let (Some(cell), Some(row)) = (t.cell.take(), t.row.as_mut()) {
                                row.push(cell);
                            }
                        }
                    }
                    "tr" => {
                        if let Some(t) = tables.last_mut() {
                            if let Some(row) = t.row.take() {
                                t.rows.push(row);
                            }
                        }
                    }
                    "tbl" => {
                        let Some(t) = tables.pop() else { continue };
                        let rows: Vec<Vec<String>> = t
                            .rows
                            .into_iter()
                            .filter(|r| r.iter().any(|c| !c.trim().is_empty()))
                            .collect();
                        if rows.is_empty() {
                            continue;
                        }
                        if let Some(cell) = tables.last_mut().and_then(|t| t.cell.as_mut()) {
                            // A nested table flattens into its cell.
                            for r in rows {
                                if !cell.is_empty() {
                                    cell.push('\n');
                                }
                                cell.push_str(&r.join(" ; "));
                            }
                        } else {
                            blocks.push(Block::Table(rows));
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(blocks)
}

/// `<w:tab/>` inside `<w:tabs>` of paragraph properties is a tab stop, not a tab character.
fn in_ppr(e: &BytesStart<'_>) -> bool {
    attr(e, "pos").is_some()
}

fn para_prop(e: &BytesStart<'_>, name: &str, p: Option<&mut Para>) {
    let Some(p) = p else { return };
    match name {
        "pStyle" => p.style = attr(e, "val"),
        "numId" => p.num_id = attr(e, "val"),
        "ilvl" => p.ilvl = attr(e, "val").and_then(|v| v.parse().ok()),
        "outlineLvl" => p.outline = attr(e, "val").and_then(|v| v.parse().ok()),
        _ => {}
    }
}

fn close_link(p: &mut Para, target: Option<String>, start: usize) {
    let Some(url) = target.filter(|u| !u.is_empty()) else {
        return;
    };
    let label = p.text.get(start..).unwrap_or("").trim().to_owned();
    if label.is_empty() {
        return;
    }
    p.text.truncate(start);
    if label == url {
        p.text.push_str(&format!("<{url}>"));
    } else {
        p.text.push_str(&format!("[{label}]({url})"));
    }
}

fn finish_para(p: Para, ctx: &Ctx<'_>) -> Block {
    let heading = p
        .style
        .as_ref()
        .and_then(|s| ctx.styles.heading.get(s).copied())
        .or(p.outline.filter(|l| *l < 6).map(|l| l + 1));
    let style_num = p.style.as_ref().and_then(|s| ctx.styles.num.get(s));
    let num_id = p
        .num_id
        .clone()
        .or_else(|| style_num.map(|(n, _)| n.clone()))
        .filter(|n| n != "0" && !n.is_empty());
    let ilvl = p.ilvl.or(style_num.map(|(_, l)| *l)).unwrap_or(0).min(8);
    let list = match num_id {
        Some(n) => {
            let bullet = ctx
                .numbering
                .bullet
                .get(&(n.clone(), ilvl))
                .copied()
                .unwrap_or(true);
            Some((n, ilvl, bullet))
        }
        None => p
            .style
            .as_ref()
            .and_then(|s| ctx.styles.bullet_style.get(s))
            .map(|b| {
                (
                    format!("style:{}", p.style.clone().unwrap_or_default()),
                    0,
                    *b,
                )
            }),
    };
    Block::Para {
        text: p.text,
        heading: if list.is_some() { None } else { heading },
        list,
    }
}

/// List counters: (numId, level) → last number written.
#[derive(Default)]
struct Counters {
    n: HashMap<(String, u8), u32>,
}

fn render(blocks: &[Block], counters: &mut Counters) -> String {
    let mut out = String::new();
    let mut prev_list = false;
    for b in blocks {
        match b {
            Block::Para {
                text,
                heading,
                list,
            } => {
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let is_list = list.is_some();
                if !out.is_empty() {
                    out.push_str(if prev_list && is_list { "\n" } else { "\n\n" });
                }
                if let Some(level) = heading {
                    out.push_str(&"#".repeat(usize::from(*level)));
                    out.push(' ');
                    out.push_str(&text.replace('\n', " "));
                } else if let Some((num, level, bullet)) = list {
                    // Deeper levels restart when a shallower item comes.
                    counters.n.retain(|(n, l), _| n != num || *l <= *level);
                    out.push_str(&"  ".repeat(usize::from(*level)));
                    if *bullet {
                        out.push_str("- ");
                    } else {
                        let c = counters.n.entry((num.clone(), *level)).or_insert(0);
                        *c += 1;
                        out.push_str(&format!("{c}. "));
                    }
                    out.push_str(text);
                } else {
                    out.push_str(text);
                }
                prev_list = is_list;
            }
            Block::Table(rows) => {
                if !out.is_empty() {
                    out.push_str("\n\n");
                }
                markdown::table(rows, &mut out);
                while out.ends_with('\n') {
                    out.pop();
                }
                prev_list = false;
            }
        }
    }
    out
}

/// Footnotes or endnotes: (id, text), separators left out.
fn parse_notes(
    xml: &str,
    kind: &str,
    ctx: &Ctx<'_>,
) -> Result<Vec<(String, String)>, ExtractError> {
    // Cut the part into its notes, then read each note's paragraphs as a small body.
    let mut out = Vec::new();
    let mut reader = Reader::from_str(xml);
    let mut start: Option<(String, usize)> = None;
    loop {
        let pos = reader.buffer_position() as usize;
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == kind => {
                let separator = attr(&e, "type").is_some_and(|t| t != "normal");
                let id = attr(&e, "id").unwrap_or_default();
                start = (!separator).then_some((id, pos));
            }
            Ok(Event::End(e)) if e.local_name().as_ref() == kind => {
                if let Some((id, s)) = start.take() {
                    let end = reader.buffer_position() as usize;
                    let Some(fragment) = xml.get(s..end) else {
                        continue;
                    };
                    let blocks = parse_blocks(fragment, ctx, false)?;
                    let text = render(&blocks, &mut Counters::default());
                    let text = text.trim();
                    if !text.is_empty() {
                        out.push((id, text.replace("\n\n", " ")));
                    }
                }
            }
            Ok(Event::Eof) => break,
            Err(_) => {
                return Err(ExtractError::Corrupt(
                    "the DOCX document is damaged (its notes are not well-formed)".into(),
                ))
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relationship_targets_resolve_against_the_part_folder() {
        assert_eq!(resolve("word", "header1.xml"), "word/header1.xml");
        assert_eq!(resolve("word", "../customXml/a.xml"), "customXml/a.xml");
        assert_eq!(resolve("word", "/word/footer.xml"), "word/footer.xml");
    }

    #[test]
    fn heading_names() {
        assert_eq!(heading_from_name("heading 2"), Some(2));
        assert_eq!(heading_from_name("Title"), Some(1));
        assert_eq!(heading_from_name("Normal"), None);
    }
}
