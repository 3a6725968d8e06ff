#!/usr/bin/env python3
"""Module-level import cycles inside one Rust crate (stdlib only).

Usage: python3 cycles.py CRATE_SRC_DIR [--compact] [--layers] [--all-edges] [--reexport-edges]

A module is a file (crm/config.rs is `crm::config`, crm/mod.rs is `crm`, lib.rs is `crate`);
inline `mod x { .. }` blocks belong to their file. An edge A -> B is recorded when A's non-test
code names an item of B through
  * a `use` declaration (groups, nested braces, `self`, `as`, globs; `crate::`, `super::`,
    `self::` and bare child-module / imported-module first segments), or
  * a path in code (`crate::b::f()`, `super::X`, `child::Y`, `alias::Z` after `use crate::b;`),
    including paths in attributes (`#[schema(value_type = crate::schema::Name)]`).
Paths are resolved through `use` / `pub use` re-exports to the module that defines the item,
so `use crate::crm::Session` (re-exported by crm/mod.rs from crm/session.rs) is an edge to
`crm::session`, not to `crm`. A `pub use child::X` whose X is not otherwise used by the
re-exporting module is a pure re-export and is not an edge (pass --reexport-edges to count it).
A parent declaring `mod child` is not an edge. Items under `#[cfg(test)]` (the `mod tests`
blocks, test-only fns/uses) are ignored; comments and string/char literals are stripped first.
External paths (std, other crates, and re-exports of other crates) are ignored.

What-if options (to check a proposed refactoring without editing the sources; repeatable):
  --move=SRC:PAT[,PAT]=DST   edges into SRC whose item matches a glob PAT now go to DST
  --drop=SRC->DST[:PAT,..]   remove those edges (all items, or the matching ones)
  --edge=SRC->DST            add an edge (what moved code itself needs)

Prints the strongly connected components with more than one module, each internal edge with
file:line and items, and exits 1 if there is any cycle (0 otherwise, 2 on usage error).
"""

import os
import re
import sys
from bisect import bisect_right
from collections import defaultdict

# ---------------------------------------------------------------------------- lexing


def strip(src):
    """Comments and string/char literals replaced by spaces; newlines and offsets kept."""
    out = list(src)
    n = len(src)
    i = 0

    def blank(a, b):
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    def is_ident(c):
        return c.isalnum() or c == "_"

    while i < n:
        c = src[i]
        if c == "/" and src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == "/" and src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "rbc" and (i == 0 or not is_ident(src[i - 1])):
            # raw / byte / C strings: r"..", r#".."#, br"..", b"..", c"..", cr#".."#, b'x'
            m = re.compile(r'(?:br|cr|r)(#*)"').match(src, i)
            if m:
                close = '"' + m.group(1)
                j = src.find(close, m.end())
                j = n if j < 0 else j + len(close)
                blank(i, j)
                i = j
                continue
            m = re.compile(r'[bc]"').match(src, i)
            if m:
                i = _skip_quoted(src, i + 1, '"', blank)
                continue
            m = re.compile(r"b'").match(src, i)
            if m:
                i = _skip_quoted(src, i + 1, "'", blank)
                continue
            i += 1
        elif c == '"':
            i = _skip_quoted(src, i, '"', blank)
        elif c == "'":
            # char literal or lifetime / label
            if i + 1 < n and src[i + 1] == "\\":
                i = _skip_quoted(src, i, "'", blank)
            elif i + 2 < n and src[i + 2] == "'":
                blank(i, i + 3)
                i += 3
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


FORMAT_ARG = re.compile(r"\{([A-Za-z_]\w*)[:}]")


def _skip_quoted(src, i, q, blank):
    if q == '"':  # inline format arguments: "{TTL_HOURS} h" names TTL_HOURS
        j0 = i + 1
    j = i + 1
    n = len(src)
    while j < n and src[j] != q:
        j += 2 if src[j] == "\\" else 1
    if q == '"':
        FORMAT_NAMES.update(FORMAT_ARG.findall(src, j0, j))
    blank(i, j + 1)
    return j + 1


FORMAT_NAMES = set()  # names read by format strings of the file being loaded


TOKEN = re.compile(r"r#[A-Za-z_]\w*|[A-Za-z_]\w*|::|\d[\w.]*|\S")


def tokenize(text):
    toks = []
    for m in TOKEN.finditer(text):
        t = m.group(0)
        if t.startswith("r#"):
            t = t[2:]
        toks.append([t, m.start()])
    return toks


def is_ident(t):
    return bool(re.match(r"[A-Za-z_]\w*$", t))


# ---------------------------------------------------------------------------- cfg(test)

CLOSE = {"(": ")", "[": "]", "{": "}"}


def match_close(toks, i):
    """Index of the bracket closing toks[i]."""
    depth = 0
    for j in range(i, len(toks)):
        t = toks[j][0]
        if t in "([{":
            depth += 1
        elif t in ")]}":
            depth -= 1
            if depth == 0:
                return j
    return len(toks) - 1


def is_test_cfg(inner):
    """inner: tokens between `cfg(` and `)`."""
    words = [t for t in inner if is_ident(t)]
    if words == ["test"]:
        return True
    return bool(words) and words[0] == "all" and "test" in words and "not" not in words


def test_ranges(toks):
    """Token index ranges [a, b] of items under #[cfg(test)] (attribute included)."""
    ranges = []
    i = 0
    n = len(toks)
    while i < n:
        if toks[i][0] == "#" and i + 1 < n and toks[i + 1][0] in ("[", "!"):
            inner_attr = toks[i + 1][0] == "!"
            lb = i + 2 if inner_attr else i + 1
            if lb >= n or toks[lb][0] != "[":
                i += 1
                continue
            rb = match_close(toks, lb)
            body = [t[0] for t in toks[lb + 1:rb]]
            if len(body) >= 3 and body[0] == "cfg" and body[1] == "(" and is_test_cfg(body[2:-1]):
                if inner_attr:  # #![cfg(test)]: the whole file
                    return [(0, n - 1)]
                end = item_end(toks, rb + 1)
                ranges.append((i, end))
                i = end + 1
                continue
            i = rb + 1
            continue
        i += 1
    return ranges


def item_end(toks, j):
    n = len(toks)
    # further attributes
    while j < n and toks[j][0] == "#" and j + 1 < n and toks[j + 1][0] == "[":
        j = match_close(toks, j + 1) + 1
    k = j
    first_words = []
    while k < n and is_ident(toks[k][0]) and len(first_words) < 4:
        first_words.append(toks[k][0])
        k += 1
    semicolon_only = any(w in ("use", "const", "static", "type", "let") for w in first_words)
    depth = 0
    for k in range(j, n):
        t = toks[k][0]
        if t in "([{":
            if t == "{" and depth == 0 and not semicolon_only:
                return match_close(toks, k)
            depth += 1
        elif t in ")]}":
            depth -= 1
            if depth < 0:
                return k - 1
        elif t == ";" and depth == 0:
            return k
        elif t == "," and depth == 0:  # a field / arm / argument
            return k
    return n - 1


# ---------------------------------------------------------------------------- module tree


class Node:
    def __init__(self, name, parent, file, inline=False):
        self.name = name
        self.parent = parent
        self.file = file
        self.inline = inline
        self.children = {}
        self.items = set()
        self.imports = {}  # alias -> Import (item-level and block-level)
        self.globs = []  # Import
        self.file_node = self if not inline else parent.file_node

    @property
    def path(self):
        parts = []
        n = self
        while n.parent is not None:
            parts.append(n.name)
            n = n.parent
        return "::".join(reversed(parts)) or "crate"


class Import:
    def __init__(self, scope, segs, alias, is_pub, line, tok_index, item_level):
        self.scope = scope
        self.segs = segs
        self.alias = alias
        self.is_pub = is_pub
        self.line = line
        self.tok_index = tok_index
        self.item_level = item_level
        self.resolved = None


ITEM_KW = {"fn", "struct", "enum", "trait", "type", "const", "static", "union", "mod"}


class FileInfo:
    pass


class Crate:
    def __init__(self, src_dir, root_file):
        self.src_dir = src_dir
        self.files = {}  # file node -> FileInfo
        self.root = Node("crate", None, root_file)
        self.load(self.root, root_file)

    # -- loading

    def load(self, node, path):
        with open(path, encoding="utf-8") as f:
            src = f.read()
        fi = FileInfo()
        fi.path = path
        fi.rel = os.path.relpath(path)
        FORMAT_NAMES.clear()
        text = strip(src)
        fi.format_names = set(FORMAT_NAMES)
        fi.nl = [m.start() for m in re.finditer("\n", text)]
        toks = tokenize(text)
        removed = [False] * len(toks)
        for a, b in test_ranges(toks):
            for k in range(a, b + 1):
                removed[k] = True
        fi.toks = [t for t, r in zip(toks, removed) if not r]
        self.files[node] = fi
        self.scan(node, fi)

    def line(self, fi, off):
        return bisect_right(fi.nl, off - 1) + 1 if fi.nl else 1

    def child_file(self, node, name):
        f = node.file
        base = os.path.dirname(f)
        stem = os.path.basename(f)
        if stem not in ("mod.rs", "lib.rs", "main.rs"):
            base = os.path.join(base, stem[:-3])
        for cand in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
            if os.path.exists(cand):
                return cand
        return None

    def scan(self, node, fi):
        toks = fi.toks
        n = len(toks)
        fi.scope = [None] * n  # Node per token
        fi.in_use = [False] * n
        fi.uses = []
        stack = []  # (kind, Node)
        cur = node
        i = 0
        while i < n:
            t = toks[i][0]
            fi.scope[i] = cur
            item_level = not stack or stack[-1][0] == "mod"
            if t == "{":
                if i >= 2 and toks[i - 2][0] == "mod" and is_ident(toks[i - 1][0]):
                    name = toks[i - 1][0]
                    child = cur.children.get(name) or Node(name, cur, cur.file, inline=True)
                    cur.children[name] = child
                    stack.append(("mod", cur))
                    cur = child
                else:
                    stack.append(("blk", cur))
            elif t == "}":
                if stack:
                    kind, prev = stack.pop()
                    cur = prev
            elif t == "mod" and item_level and i + 2 < n and is_ident(toks[i + 1][0]) and toks[i + 2][0] == ";":
                name = toks[i + 1][0]
                path = self.child_file(cur, name)
                if path:
                    child = Node(name, cur, path)
                    cur.children[name] = child
                    self.load(child, path)
            elif t == "use" and (i == 0 or toks[i - 1][0] in (";", "{", "}", "]", "pub", ")", "crate")):
                end = i
                while end < n and toks[end][0] != ";":
                    end += 1
                is_pub = False
                k = i - 1
                if k >= 0 and toks[k][0] == ")":
                    while k >= 0 and toks[k][0] != "(":
                        k -= 1
                    k -= 1
                if k >= 0 and toks[k][0] == "pub":
                    is_pub = True
                for k in range(i, min(end + 1, n)):
                    fi.in_use[k] = True
                    fi.scope[k] = cur
                for segs, alias, tix in parse_use_tree(toks, i + 1, end):
                    imp = Import(cur, segs, alias, is_pub, self.line(fi, toks[tix][1]), tix, item_level)
                    fi.uses.append(imp)
                    if alias == "*":
                        cur.globs.append(imp)
                    else:
                        cur.imports[alias] = imp
                i = end + 1
                continue
            elif item_level and t in ITEM_KW and i + 1 < n and is_ident(toks[i + 1][0]):
                name = toks[i + 1][0]
                if not (t == "const" and name in ("fn", "unsafe", "async", "extern")):
                    cur.items.add(name)
            elif item_level and t == "macro_rules" and i + 2 < n and toks[i + 1][0] == "!":
                cur.items.add(toks[i + 2][0])
            i += 1

    # -- resolution

    def lookup_first(self, scope, name, block_ok=True):
        """Node/item that a bare first path segment names in `scope`, or None (external)."""
        if name in scope.children:
            return ("node", scope.children[name])
        imp = scope.imports.get(name)
        if imp and (block_ok or imp.item_level):
            return ("import", imp)
        return None

    def resolve(self, scope, segs, depth=0):
        """(node, item) for a path written in `scope`; item None for a module; None if external."""
        if depth > 20 or not segs:
            return None
        first = segs[0]
        rest = segs[1:]
        if first == "crate":
            node = self.root
        elif first == "self":
            node = scope
        elif first == "super":
            node = scope.parent or scope
            while rest and rest[0] == "super":
                node = node.parent or node
                rest = rest[1:]
        else:
            hit = self.lookup_first(scope, first)
            if hit is None:
                if first in scope.items:
                    return (scope, first)
                return None
            if hit[0] == "node":
                node = hit[1]
            else:
                r = self.resolve_import(hit[1], depth + 1)
                if r is None:
                    return None
                if r[1] is not None:
                    return r
                node = r[0]
        return self.walk(node, rest, depth)

    def resolve_import(self, imp, depth=0):
        if imp.resolved is None:
            imp.resolved = ("pending",)
            imp.resolved = ("done", self.resolve(imp.scope, imp.segs, depth + 1))
        if imp.resolved[0] == "pending":
            return None
        return imp.resolved[1]

    def walk(self, node, rest, depth):
        while rest:
            name = rest[0]
            if name in node.children:
                node = node.children[name]
                rest = rest[1:]
                continue
            if name in node.items:
                return (node, name)
            imp = node.imports.get(name)
            if imp and imp.item_level:
                r = self.resolve_import(imp, depth + 1)
                if r is None:
                    return None
                if r[1] is None:
                    node = r[0]
                    rest = rest[1:]
                    continue
                return r
            for g in node.globs:
                gt = self.resolve_import(g, depth + 1)
                if gt and gt[1] is None and gt[0] is not node:
                    if name in gt[0].items or name in gt[0].children or name in gt[0].imports:
                        return self.walk(gt[0], rest, depth + 1)
            return (node, name)
        return (node, None)

    # -- edges

    def edges(self, reexport_edges=False):
        """List of (src_mod, dst_mod, file, line, label, kind)."""
        out = []
        for fnode, fi in self.files.items():
            toks = fi.toks
            n = len(toks)
            used = defaultdict(int)  # ident -> count outside use declarations
            for k in range(n):
                if not fi.in_use[k] and is_ident(toks[k][0]):
                    used[toks[k][0]] += 1
            for name in fi.format_names:
                used[name] += 1
            alias_used_by_path = set()
            # paths in code
            k = 0
            while k < n:
                if fi.in_use[k] or not is_ident(toks[k][0]) or (k > 0 and toks[k - 1][0] == "::"):
                    k += 1
                    continue
                segs = [toks[k][0]]
                j = k + 1
                while j + 1 < n and toks[j][0] == "::" and is_ident(toks[j + 1][0]) and not fi.in_use[j]:
                    segs.append(toks[j + 1][0])
                    j += 2
                if len(segs) >= 2:
                    scope = fi.scope[k]
                    first = segs[0]
                    relevant = first in ("crate", "super", "self") or first in scope.children
                    imp = None
                    if not relevant:
                        hit = self.lookup_first(scope, first)
                        if hit and hit[0] == "import":
                            imp = hit[1]
                            r = self.resolve_import(imp)
                            relevant = r is not None and r[1] is None  # a module alias
                    if relevant:
                        r = self.resolve(scope, segs)
                        if r is not None:
                            if imp is not None:
                                alias_used_by_path.add(id(imp))
                            self._add(out, fnode, r, fi, toks[k][1], "path")
                k = j if j > k + 1 else k + 1
            # use declarations
            for imp in fi.uses:
                if imp.alias == "*":
                    self._glob_edges(out, fnode, fi, imp, used)
                    continue
                r = self.resolve_import(imp)
                if r is None:
                    continue
                if r[1] is None:  # a module imported
                    if id(imp) in alias_used_by_path:
                        continue
                    kind = "use"
                    if imp.is_pub and used.get(imp.alias, 0) == 0:
                        kind = "reexport"
                    if kind == "reexport" and not reexport_edges:
                        continue
                    self._add(out, fnode, r, fi, None, kind, line=imp.line, label="(module)")
                    continue
                kind = "use"
                if used.get(imp.alias, 0) == 0:
                    kind = "reexport" if imp.is_pub else "use(unused)"
                if kind == "reexport" and not reexport_edges:
                    continue
                self._add(out, fnode, r, fi, None, kind, line=imp.line)
        return out

    def _glob_edges(self, out, fnode, fi, imp, used):
        r = self.resolve_import(imp)
        if r is None or r[1] is not None:
            return
        target = r[0]
        if target.file_node is fnode:
            return
        hits = 0
        names = set(target.items) | set(target.imports) | set(target.children)
        for name in sorted(names):
            if used.get(name):
                rr = self.walk(target, [name], 0)
                if rr is not None:
                    hits += 1
                    self._add(out, fnode, rr, fi, None, "glob", line=imp.line)
        if not hits:
            self._add(out, fnode, (target, None), fi, None, "glob", line=imp.line, label="*")

    def _add(self, out, fnode, r, fi, off, kind, line=None, label=None):
        node, item = r
        dst = node.file_node
        if dst is fnode:
            return
        if label is None:
            parts = []
            m = node
            while m is not dst:
                parts.append(m.name)
                m = m.parent
            parts.reverse()
            if item:
                parts.append(item)
            label = "::".join(parts) or "(module)"
        if line is None:
            line = self.line(fi, off)
        out.append((fnode.path, dst.path, fi.rel, line, label, kind))


def parse_use_tree(toks, i, end):
    """Leaves of a use tree in toks[i:end]: (segments, alias, token index)."""
    leaves = []

    def tree(i, prefix):
        segs = list(prefix)
        if i < end and toks[i][0] == "::":
            i += 1
        while i < end:
            t = toks[i][0]
            if t == "{":
                i += 1
                while i < end and toks[i][0] != "}":
                    i = tree(i, segs)
                    if i < end and toks[i][0] == ",":
                        i += 1
                return i + 1
            if t == "*":
                leaves.append((segs, "*", i))
                return i + 1
            if is_ident(t):
                tix = i
                i += 1
                if i < end and toks[i][0] == "::":
                    segs = segs + [t]
                    i += 1
                    continue
                alias = t
                if t == "self":
                    path = segs
                    alias = segs[-1] if segs else "self"
                else:
                    path = segs + [t]
                if i + 1 < end and toks[i][0] == "as":
                    alias = toks[i + 1][0]
                    i += 2
                if alias != "_":
                    leaves.append((path, alias, tix))
                else:
                    leaves.append((path, "_" + str(tix), tix))
                return i
            i += 1
        return i

    tree(i, [])
    return leaves


# ---------------------------------------------------------------------------- graph


def tarjan(nodes, adj):
    index, low, on, stack, sccs = {}, {}, set(), [], []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(adj.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return sccs


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    flags = [a for a in argv[1:] if a.startswith("--")]
    if len(args) != 1 or not os.path.isdir(args[0]):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    src = args[0]
    roots = [f for f in ("lib.rs", "main.rs") if os.path.exists(os.path.join(src, f))]
    if not roots:
        print(f"no lib.rs or main.rs in {src}", file=sys.stderr)
        return 2
    status = 0
    for k, root in enumerate(roots):
        crate = Crate(src, os.path.join(src, root))
        if k > 0 and len(crate.files) == 1:
            print(f"# {src}/{root}: a separate (binary) crate root with no modules of its own; skipped\n")
            continue
        status |= report(src, root, crate, flags)
    return status


def what_if(edges, mods, flags):
    from fnmatch import fnmatchcase
    for flag in flags:
        name, _, spec = flag.partition("=")
        if name == "--move":
            src, rest = (re.split(r"(?<!:):(?!:)", spec, maxsplit=1) + [""])[:2]
            pats, _, dst = rest.rpartition("=")
            pats = pats.split(",")
            edges = [(s, dst if d == src and any(fnmatchcase(lb, p) for p in pats) else d, f, ln, lb, k)
                     for s, d, f, ln, lb, k in edges]
            edges = [e for e in edges if e[0] != e[1]]
            mods.add(dst)
        elif name == "--drop":
            pair, pats = (re.split(r"(?<!:):(?!:)", spec, maxsplit=1) + [""])[:2]
            src, _, dst = pair.partition("->")
            pats = pats.split(",") if pats else ["*"]
            edges = [e for e in edges if not (e[0] == src and e[1] == dst
                                              and any(fnmatchcase(e[4], p) for p in pats))]
        elif name == "--edge":
            src, _, dst = spec.partition("->")
            edges.append((src, dst, "(what-if)", 0, "(added)", "what-if"))
            mods.update((src, dst))
    return edges


def report(src, root, crate, flags):
    edges = crate.edges(reexport_edges="--reexport-edges" in flags)
    mods = {n.path for n in crate.files}
    edges = what_if(edges, mods, [f for f in flags if "=" in f])
    mods = sorted(mods)
    adj = defaultdict(set)
    sites = defaultdict(list)
    for s, d, f, line, label, kind in edges:
        adj[s].add(d)
        sites[(s, d)].append((f, line, label, kind))
    sccs = [c for c in tarjan(mods, adj) if len(c) > 1]
    n_edges = sum(len(v) for v in adj.values())
    print(f"# {src} (root {root}): {len(mods)} modules, {n_edges} module edges, "
          f"{len(sccs)} cyclic SCC(s)")
    if "--all-edges" in flags:
        for (s, d) in sorted(sites):
            print(f"edge {s} -> {d}: {fmt_sites(sites[(s, d)])}")
    for i, comp in enumerate(sorted(sccs, key=lambda c: (-len(c), c)), 1):
        members = set(comp)
        print(f"\nSCC {i} ({len(comp)} modules): {', '.join(comp)}")
        for s in comp:
            inside = sorted(adj[s] & members)
            if "--compact" in flags and inside:
                f = next(x[0] for d in inside for x in sites[(s, d)])
                parts = [f"{d}[{fmt_compact(sites[(s, d)])}]" for d in inside]
                print(f"  {s} ({f}) -> " + " ".join(parts))
                continue
            for d in inside:
                print(f"  {s} -> {d}: {fmt_sites(sites[(s, d)])}")
    if "--layers" in flags:
        print_layers(mods, adj, sccs)
    print()
    return 1 if sccs else 0


def fmt_sites(sites):
    by_line = defaultdict(list)
    for f, line, label, kind in sites:
        tag = "" if kind in ("use", "path") else f"[{kind}]"
        by_line[(f, line)].append(label + tag)
    parts = []
    for (f, line), labels in sorted(by_line.items(), key=lambda x: x[0][1]):
        uniq = sorted(set(labels))
        parts.append(f"{f}:{line} {{{', '.join(uniq)}}}")
    return "; ".join(parts)


def fmt_compact(sites):
    """item@line,line; ... (the file is the source module's)."""
    by_item = defaultdict(set)
    for f, line, label, kind in sites:
        tag = "" if kind in ("use", "path") else f"({kind})"
        by_item[label + tag].add(line)
    order = sorted(by_item, key=lambda k: (min(by_item[k]), k))
    return "; ".join(f"{k}@{','.join(map(str, sorted(by_item[k])))}" for k in order)


def print_layers(mods, adj, sccs):
    """Layer of each module in the condensation (0 = imports nothing inside the crate)."""
    comp_of = {m: m for m in mods}
    for c in sccs:
        name = "{" + ", ".join(c) + "}"
        for m in c:
            comp_of[m] = name
    cadj = defaultdict(set)
    for s, ds in adj.items():
        for d in ds:
            if comp_of[s] != comp_of[d]:
                cadj[comp_of[s]].add(comp_of[d])
    layer = {}

    def depth(c, seen=()):
        if c in layer:
            return layer[c]
        layer[c] = 1 + max((depth(d) for d in cadj[c]), default=-1)
        return layer[c]

    for c in set(comp_of.values()):
        depth(c)
    print("\nLayers (condensation; a module only imports from lower layers):")
    for lv in range(max(layer.values()) + 1):
        print(f"  L{lv}: {', '.join(sorted(c for c in layer if layer[c] == lv))}")


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except BrokenPipeError:
        sys.exit(1)
