"""Generates the large documents of the extraction benchmark (deterministic content).

Usage: gen_large.py OUT_DIR
"""
import datetime
import os
import random
import sys

WORDS = (
    "revenue margin quarter region growth customer contract invoice supplier forecast budget "
    "headcount pipeline churn retention pricing discount warehouse logistics compliance audit "
    "strategy roadmap launch feedback survey analysis summary appendix"
).split()


def sentence(rng, n=14):
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def pdf(path, rng):
    import pymupdf

    doc = pymupdf.open()
    for page_no in range(300):
        page = doc.new_page()
        y = 60
        page.insert_text((56, y), f"Section {page_no + 1}", fontsize=16)
        y += 30
        while y < 760:
            page.insert_text((56, y), sentence(rng, 11), fontsize=10)
            y += 14
    doc.save(path)


def docx(path, rng):
    import docx

    d = docx.Document()
    for s in range(150):
        d.add_heading(f"Chapter {s + 1}", level=1)
        for _ in range(15):
            d.add_paragraph(" ".join(sentence(rng) for _ in range(3)))
        for _ in range(3):
            d.add_paragraph(sentence(rng, 6), style="List Bullet")
        t = d.add_table(rows=6, cols=4)
        for r in t.rows:
            for c in r.cells:
                c.text = f"{rng.choice(WORDS)} {rng.randint(1, 9999)}"
    d.save(path)


def xlsx(path, rng):
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    start = datetime.date(2020, 1, 1)
    for name in ("Orders", "Customers", "Stock"):
        ws = wb.create_sheet(name)
        ws.append(["Date", "Region", "Product", "Units", "Price", "Note"])
        for i in range(12000):
            ws.append([
                start + datetime.timedelta(days=i % 1500),
                rng.choice(WORDS),
                f"{rng.choice(WORDS)}-{rng.randint(1, 500)}",
                rng.randint(1, 1000),
                round(rng.uniform(1, 500), 2),
                sentence(rng, 5),
            ])
    wb.save(path)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    pdf(os.path.join(out, "large.pdf"), random.Random(1))
    docx(os.path.join(out, "large.docx"), random.Random(2))
    xlsx(os.path.join(out, "large.xlsx"), random.Random(3))


if __name__ == "__main__":
    main()
