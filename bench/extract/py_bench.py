"""Python baselines for the extraction benchmark: same interface and output as the Rust runner.

Usage: py_bench.py LIB OUT_DIR FILE...   (LIB: pdfplumber | pymupdf | python-docx | openpyxl)
Prints one JSON line: files, failed, bytes, pages, seconds (sum of per-file time per run), peak RSS.
"""
import datetime
import json
import os
import resource
import sys
import time


def pdfplumber_text(path):
    import pdfplumber

    with pdfplumber.open(path) as pdf:
        pages = [p.extract_text() or "" for p in pdf.pages]
    return "\n".join(pages), len(pages)


def pymupdf_text(path):
    import pymupdf

    doc = pymupdf.open(path)
    pages = [p.get_text() for p in doc]
    return "\n".join(pages), len(pages)


def docx_text(path):
    import docx

    d = docx.Document(path)
    parts = [p.text for p in d.paragraphs]
    for t in d.tables:
        for row in t.rows:
            parts.append(" | ".join(c.text for c in row.cells))
    return "\n".join(parts), 1


def cell(v):
    if v is None:
        return ""
    if isinstance(v, datetime.datetime) and v.time() == datetime.time(0):
        return v.date().isoformat()
    if isinstance(v, (datetime.date, datetime.time, datetime.datetime)):
        return v.isoformat(sep=" ") if isinstance(v, datetime.datetime) else v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def openpyxl_text(path):
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    parts = []
    for ws in wb.worksheets:
        parts.append("## Sheet: " + ws.title)
        for row in ws.iter_rows(values_only=True):
            cells = [cell(v) for v in row]
            if any(cells):
                parts.append(" | ".join(cells))
    n = len(wb.worksheets)
    wb.close()
    return "\n".join(parts), n


LIBS = {
    "pdfplumber": pdfplumber_text,
    "pymupdf": pymupdf_text,
    "python-docx": docx_text,
    "openpyxl": openpyxl_text,
}


def main():
    lib, out_dir, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    fn = LIBS[lib]
    os.makedirs(out_dir, exist_ok=True)
    total = dict(engine=lib, files=0, failed=0, bytes=0, pages=0, seconds=0.0)
    for path in files:
        total["files"] += 1
        start = time.perf_counter()
        runs = 0
        result = None
        while runs == 0 or (time.perf_counter() - start < 0.05 and runs < 1000):
            try:
                result = fn(path)
            except Exception:  # a baseline that fails on a file is counted, not fatal
                result = None
            runs += 1
        per_run = (time.perf_counter() - start) / runs
        if result is None:
            total["failed"] += 1
            continue
        text, pages = result
        key = path.replace("/", "__")
        with open(os.path.join(out_dir, key + ".txt"), "w", encoding="utf-8") as f:
            f.write(text)
        total["bytes"] += os.path.getsize(path)
        total["pages"] += pages
        total["seconds"] += per_run
    total["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(total))


if __name__ == "__main__":
    main()
