#!/usr/bin/env python3
"""Example processing command: ``textstats.py INPUT OUTPUT`` writes a JSON report about INPUT.

* CSV files (``.csv``): rows, and per column the count, and for numeric columns min/max/mean.
* Any other text: lines, words, characters and the ten most frequent words.

It is what getjobs runs in ``make demo``: a real command, called as ``COMMAND INPUT OUTPUT``, that
fails with exit code 1 and a clear message on input it cannot read (e.g. not UTF-8), so the demo
shows a job reaching the dead-letter queue too.
"""

import csv
import json
import re
import sys
from collections import Counter

WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


def text_report(text: str) -> dict:
    words = [w.lower() for w in WORD.findall(text)]
    return {
        "kind": "text",
        "lines": text.count("\n") + (1 if text and not text.endswith("\n") else 0),
        "words": len(words),
        "characters": len(text),
        "top_words": Counter(w for w in words if len(w) > 3).most_common(10),
    }


def csv_report(text: str) -> dict:
    rows = list(csv.DictReader(text.splitlines()))
    columns = {}
    for name in (rows[0].keys() if rows else []):
        values = [r[name] for r in rows if r.get(name) not in (None, "")]
        col = {"count": len(values)}
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            numbers = None
        if numbers:
            col.update(min=min(numbers), max=max(numbers), mean=round(sum(numbers) / len(numbers), 3))
        columns[name] = col
    return {"kind": "csv", "rows": len(rows), "columns": columns}


def main(argv):
    if len(argv) != 3:
        print("usage: textstats.py INPUT OUTPUT", file=sys.stderr)
        return 2
    source, target = argv[1], argv[2]
    try:
        with open(source, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        print(f"textstats: {source}: not UTF-8 text (byte {exc.start})", file=sys.stderr)
        return 1
    report = csv_report(text) if source.lower().endswith(".csv") else text_report(text)
    with open(target, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=2, ensure_ascii=False)
        out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
