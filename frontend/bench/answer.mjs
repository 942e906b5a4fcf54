// Deterministic Markdown answers for the rendering benchmark (bench/render.mjs): headings,
// paragraphs with inline code, math and citations, tables, code blocks, display math and lists,
// the mix a long answer from a model has. The fake provider (e2e/fake-openai.mjs) streams them.

const LANGS = ["rust", "python", "typescript", "sql", "bash"];

const CODE = {
  rust: (i) => `fn total_${i}(xs: &[u64]) -> u64 {\n    let mut sum = 0;\n    for x in xs {\n        sum += x * ${i};\n    }\n    sum\n}\n`,
  python: (i) => `def growth_${i}(rate: float, quarters: int) -> float:\n    """Compound growth over the quarters."""\n    value = 1.0\n    for _ in range(quarters):\n        value *= 1 + rate\n    return value - ${i}\n`,
  typescript: (i) => `export function mean${i}(xs: number[]): number {\n  if (xs.length === 0) return 0;\n  const sum = xs.reduce((a, b) => a + b, 0);\n  return sum / xs.length + ${i};\n}\n`,
  sql: (i) => `SELECT region, SUM(revenue) AS total_${i}\nFROM sales\nWHERE quarter = 'Q${(i % 4) + 1}'\nGROUP BY region\nORDER BY total_${i} DESC;\n`,
  bash: (i) => `for f in reports/*.csv; do\n  echo "section ${i}: $f"\n  wc -l "$f"\ndone\n`,
};

/** Section `i` of a long answer (about 1,000 characters). */
export function section(i) {
  const lang = LANGS[i % LANGS.length];
  const parts = [
    `## ${i + 1}. Findings for region ${i + 1}\n\n`,
    `The **quarterly revenue** of region ${i + 1} grew by ${(i * 7) % 23}% [${(i % 5) + 1}], and \`growth_${i}\` computes it: ` +
      `for a rate $r$ over $n$ quarters the growth is $g = (1+r)^n - 1$. The _median_ order was ${100 + i * 13} units.\n\n`,
    `| Quarter | Revenue | Costs | Margin |\n|---|---:|---:|---:|\n` +
      [1, 2, 3, 4].map((q) => `| Q${q} | ${(i + 1) * q * 1.5}M | ${(i + q) * 0.7}M | ${(q * 3 + i) % 40}% |\n`).join("") +
      "\n",
    "```" + lang + "\n" + CODE[lang](i) + "```\n\n",
    `$$\nR_{${i}} = \\sum_{q=1}^{4} \\frac{r_q}{1 + c_q} + \\int_0^{${i + 1}} x^2\\,dx\n$$\n\n`,
    `- Revenue rose in ${(i % 4) + 1} of 4 quarters\n- Costs stayed within **${5 + (i % 6)}%**\n  - of which staff: ${(i * 3) % 50}%\n- See the note on \`Q${(i % 4) + 1}\`\n\n`,
    `1. Check the ledger\n2. Compare with last year [${(i % 3) + 1}]\n3. Report by ${i % 2 ? "Friday" : "Monday"}\n\n`,
  ];
  return parts.join("");
}

/** A long answer of at least `chars` characters. */
export function longAnswer(chars = 20_000) {
  let text = "# Quarterly report\n\nA summary of every region, with the figures behind it.\n\n";
  for (let i = 0; text.length < chars; i++) text += section(i);
  return text;
}

/** `text` cut into `n` pieces of (nearly) equal length, as a model streams it. */
export function tokensOf(text, n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(text.slice(Math.floor((i * text.length) / n), Math.floor(((i + 1) * text.length) / n)));
  return out;
}
