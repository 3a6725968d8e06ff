#!/usr/bin/env python3
"""Size limits of the Rust sources (stdlib only): no file over 800 lines, no function over 120.

Usage: python3 sizes.py DIR [DIR ...]   (every *.rs under each DIR, `target` directories skipped)

A function runs from its `fn` line to the `}` at the same indentation (rustfmt's layout); a
signature spanning lines, `where` clauses and one-line bodies are understood, and a trait
method without a body is not a function. Prints each file and function over its limit with
its length, and exits 1 if there is any (0 otherwise).
"""

import os
import re
import sys

MAX_FILE_LINES = 800
MAX_FN_LINES = 120

FN = re.compile(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")


def functions(lines):
    """(name, first line, length) of every function with a body."""
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        indent, name = m.group(1), m.group(2)
        stripped = line.rstrip()
        if stripped.endswith("}") and "{" in stripped:
            yield name, i + 1, 1
            continue
        if stripped.endswith(";"):
            continue
        for j in range(i + 1, len(lines)):
            other = lines[j]
            if other == indent + "}":
                yield name, i + 1, j - i + 1
                break
            if not other.strip():
                continue
            if not other.startswith(indent):
                break  # left the enclosing block: not a function with a body here
            rest = other[len(indent):]
            if rest[0] != " ":
                if rest[0] == ")" and rest.rstrip().endswith(";"):
                    break  # a trait method's multi-line declaration
                if rest[0] in ")]{" or rest.startswith("where"):
                    continue
                break


def main(dirs):
    problems = []
    files = 0
    for top in dirs:
        for root, subdirs, names in os.walk(top):
            subdirs[:] = sorted(d for d in subdirs if d != "target")
            for name in sorted(names):
                if not name.endswith(".rs"):
                    continue
                path = os.path.join(root, name)
                files += 1
                with open(path, encoding="utf-8") as f:
                    lines = f.read().split("\n")
                count = len(lines) - (1 if lines and lines[-1] == "" else 0)
                if count > MAX_FILE_LINES:
                    problems.append(f"{path}: {count} lines (at most {MAX_FILE_LINES})")
                for fn, start, length in functions(lines):
                    if length > MAX_FN_LINES:
                        problems.append(
                            f"{path}:{start}: fn {fn} is {length} lines (at most {MAX_FN_LINES})"
                        )
    for problem in problems:
        print(problem)
    print(f"# sizes: {files} files, {len(problems)} over the limits")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
