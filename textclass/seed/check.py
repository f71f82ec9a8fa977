#!/usr/bin/env python3
"""Validate the request-type seed set and print its counts.

Usage: python3 check.py            (from this folder, or give the folder as argument)

Checks, for train.tsv and test.tsv:
  * UTF-8, one example per line, exactly one TAB, no header;
  * label is one of interest / claim / bug / other;
  * text is non-empty, has no leading/trailing whitespace, no control characters
    (a newline inside a message is written as the two characters backslash + n);
  * no duplicate texts within or across the two files (compared case-insensitively,
    with punctuation, emoji and whitespace ignored);
  * minimum sizes: train >= 600 (>= 150 per label), test >= 200 (>= 50 per label).
Prints counts per label and a rough language split by script: a text counts as
"cyrillic" when it has at least as many Cyrillic letters as Latin ones, else "latin"
(so transliterated Russian counts as latin).
Exit status 0 when everything passes, 1 otherwise.
"""
import sys
import unicodedata
from collections import Counter
from pathlib import Path

LABELS = ("interest", "claim", "bug", "other")
MINIMUM = {"train.tsv": (600, 150), "test.tsv": (200, 50)}


def script_of(text):
    cyr = lat = 0
    for ch in text:
        if ch.isalpha():
            if "\u0400" <= ch <= "\u04ff":
                cyr += 1
            elif ch.isascii():
                lat += 1
    if cyr == 0 and lat == 0:
        return "none"
    return "cyrillic" if cyr >= lat else "latin"


def norm(text):
    return "".join(ch for ch in text.lower() if ch.isalnum())


def main():
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    errors = []
    seen = {}  # normalised text -> "file:line"
    for name, (min_total, min_label) in MINIMUM.items():
        path = folder / name
        try:
            lines = path.read_bytes().decode("utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"{name}: cannot read as UTF-8: {exc}")
            continue
        if lines and lines[-1] == "":
            lines.pop()
        labels, langs, multiline = Counter(), Counter(), 0
        for no, line in enumerate(lines, 1):
            where = f"{name}:{no}"
            if line.count("\t") != 1:
                errors.append(f"{where}: expected exactly one TAB, found {line.count(chr(9))}")
                continue
            label, text = line.split("\t")
            if label not in LABELS:
                errors.append(f"{where}: unknown label {label!r}")
            if not text.strip():
                errors.append(f"{where}: empty text")
                continue
            if text != text.strip():
                errors.append(f"{where}: leading/trailing whitespace")
            if any(unicodedata.category(ch) == "Cc" for ch in text):
                errors.append(f"{where}: control character inside text")
            key = norm(text) or text
            if key in seen:
                errors.append(f"{where}: duplicate of {seen[key]}: {text!r}")
            else:
                seen[key] = where
            labels[label] += 1
            langs[(label, script_of(text))] += 1
            multiline += "\\n" in text
        total = sum(labels.values())
        print(f"{name}: {total} examples, {multiline} with \\n line breaks")
        print(f"  {'label':<9} {'total':>5} {'cyrillic':>9} {'latin':>6} {'none':>5}")
        for lab in LABELS:
            row = [langs[(lab, s)] for s in ("cyrillic", "latin", "none")]
            print(f"  {lab:<9} {labels[lab]:>5} {row[0]:>9} {row[1]:>6} {row[2]:>5}")
            if labels[lab] < min_label:
                errors.append(f"{name}: only {labels[lab]} {lab} examples (< {min_label})")
        col = [sum(langs[(lab, s)] for lab in LABELS) for s in ("cyrillic", "latin", "none")]
        print(f"  {'all':<9} {total:>5} {col[0]:>9} {col[1]:>6} {col[2]:>5}")
        if total < min_total:
            errors.append(f"{name}: only {total} examples (< {min_total})")
    if errors:
        print(f"\nFAILED: {len(errors)} problem(s)")
        for err in errors:
            print("  " + err)
        return 1
    print("\nOK: format valid, no duplicates, sizes met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
