"""Turns the benchmark runs into the Markdown table of BENCHMARKS.md.

Usage: compare.py RESULTS_DIR
RESULTS_DIR holds <family>.<engine>.json (one summary line each) and text/<family>/<engine>/*.txt.
For each family: throughput (MB/s, pages/s), peak memory, the speed ratio against each Python
baseline, and word recall/precision of every engine against the family's reference extractor
(PyMuPDF for PDF, python-docx for DOCX, openpyxl for XLSX), over the files both extracted.
"""
import collections
import glob
import json
import os
import re
import sys

REFERENCE = {"pdf": "pymupdf", "docx": "python-docx", "xlsx": "openpyxl"}
BASELINES = {"pdf": ["pdfplumber", "pymupdf"], "docx": ["python-docx"], "xlsx": ["openpyxl"]}
WORD = re.compile(r"\w+", re.UNICODE)
# Structure that Conversa adds and the references do not: page and sheet markers, table rules.
MARKERS = re.compile(r"^(\[page \d+\]|## Sheet: .*|\|( --- \|)+)$", re.MULTILINE)


def words(text):
    return collections.Counter(w.lower() for w in WORD.findall(MARKERS.sub("", text)))


def agreement(results, family, engine):
    ref_dir = os.path.join(results, "text", family, REFERENCE[family])
    dir_ = os.path.join(results, "text", family, engine)
    hit = ref_total = ours_total = 0
    for ref_path in glob.glob(os.path.join(ref_dir, "*.txt")):
        path = os.path.join(dir_, os.path.basename(ref_path))
        if not os.path.exists(path):
            continue
        ref = words(open(ref_path, encoding="utf-8", errors="replace").read())
        ours = words(open(path, encoding="utf-8", errors="replace").read())
        hit += sum((ref & ours).values())
        ref_total += sum(ref.values())
        ours_total += sum(ours.values())
    if ref_total == 0 or ours_total == 0:
        return None, None
    return hit / ref_total, hit / ours_total


def main():
    results = sys.argv[1]
    runs = {}
    for path in glob.glob(os.path.join(results, "*.json")):
        family, engine = os.path.basename(path)[:-5].split(".", 1)
        line = open(path).read().strip().splitlines()
        if line:
            runs[(family, engine)] = json.loads(line[-1])
    out = []
    out.append("| family | engine | files (failed) | MB/s | pages/s | peak RSS MB | speed vs baselines | word recall / precision vs reference |")
    out.append("|---|---|---|---|---|---|---|---|")
    for family in ("pdf", "docx", "xlsx"):
        engines = sorted(e for f, e in runs if f == family)
        engines.sort(key=lambda e: (not e.startswith("conversa"), e))
        for engine in engines:
            r = runs[(family, engine)]
            secs = r["seconds"] or 1e-9
            mbs = r["bytes"] / 1e6 / secs
            pps = r["pages"] / secs
            ratios = []
            for base in BASELINES[family]:
                b = runs.get((family, base))
                if b and base != engine and b["seconds"]:
                    # Same files only would be fairer; the runners read the same list, failures aside.
                    ratios.append(f"{(b['seconds'] / b['bytes']) / (secs / r['bytes']):.1f}× {base}")
            rec, prec = agreement(results, family, engine) if engine != REFERENCE[family] else (1.0, 1.0)
            agree = "reference" if engine == REFERENCE[family] else (
                f"{rec:.3f} / {prec:.3f}" if rec is not None else "n/a")
            out.append(
                f"| {family} | {engine} | {r['files']} ({r['failed']}) | {mbs:.2f} | {pps:.0f} | "
                f"{r['peak_rss_kb'] / 1024:.0f} | {', '.join(ratios) or '—'} | {agree} |"
            )
    print("\n".join(out))


if __name__ == "__main__":
    main()
