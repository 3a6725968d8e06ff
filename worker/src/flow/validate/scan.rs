//! A lexical scan of template code for the filters and tests it names. minijinja resolves
//! filters only at render time and has no stable AST API, so names are read from the code:
//! after `|` (a filter), after `is` / `is not` (a test), and the name of a `{% filter %}`
//! block. String literals and comments are skipped. It runs on templates that already
//! compiled, so it only has to find names, not judge syntax.

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Callable {
    Filter,
    Test,
}

impl Callable {
    pub(super) fn noun(self) -> &'static str {
        match self {
            Callable::Filter => "filter",
            Callable::Test => "test",
        }
    }
}

/// The filters and tests named in `source`: all of it when `expression`, else the code
/// inside `{{ … }}` and `{% … %}`.
pub(super) fn callables(source: &str, expression: bool) -> Vec<(Callable, String)> {
    let mut found = Vec::new();
    if expression {
        code(source, false, &mut found);
        return found;
    }
    let mut rest = source;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        if let Some(body) = after.strip_prefix('#') {
            rest = body.find("#}").map_or("", |end| &body[end + 2..]);
        } else if let Some(body) = after.strip_prefix('{') {
            let end = block_end(body, "}}");
            code(&body[..end], false, &mut found);
            rest = body.get(end + 2..).unwrap_or("");
        } else if let Some(body) = after.strip_prefix('%') {
            let end = block_end(body, "%}");
            let block = &body[..end];
            rest = body.get(end + 2..).unwrap_or("");
            let statement = block.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
            if statement == "raw" {
                rest = skip_raw(rest);
                continue;
            }
            code(block, true, &mut found);
        } else {
            rest = after;
        }
    }
    found
}

/// Where a `{{`/`{%` block ends: the closing marker outside strings and brackets.
fn block_end(body: &str, close: &str) -> usize {
    let bytes = body.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => i = skip_string(bytes, i),
            b'(' | b'[' | b'{' => {
                depth += 1;
                i += 1;
            }
            b')' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            // Inside a map literal a `}` (even the first of `}}`) closes the map.
            b'}' if depth > 0 => {
                depth -= 1;
                i += 1;
            }
            _ if depth == 0 && body[i..].starts_with(close) => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn skip_raw(rest: &str) -> &str {
    let mut search = rest;
    while let Some(start) = search.find("{%") {
        let body = &search[start + 2..];
        let end = body.find("%}").unwrap_or(body.len());
        let statement =
            body[..end].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        search = body.get(end + 2..).unwrap_or("");
        if statement == "endraw" {
            return search;
        }
    }
    ""
}

/// The index just past the string literal starting at `start`.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn skip_spaces(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Reads `name` or `dotted.name` at `i` (after spaces); returns it and the index after.
fn name(code: &str, i: usize) -> Option<(String, usize)> {
    let bytes = code.as_bytes();
    let mut i = skip_spaces(bytes, i);
    let mut out = String::new();
    loop {
        if i >= bytes.len() || !is_ident_start(bytes[i]) {
            return (!out.is_empty()).then_some((out, i));
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        out.push_str(&code[start..i]);
        let next = skip_spaces(bytes, i);
        if next < bytes.len() && bytes[next] == b'.' {
            out.push('.');
            i = skip_spaces(bytes, next + 1);
        } else {
            return Some((out, i));
        }
    }
}

fn code(code: &str, statement: bool, found: &mut Vec<(Callable, String)>) {
    let bytes = code.as_bytes();
    let mut i = 0;
    let mut previous: Option<u8> = None;
    let mut first_word = statement;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() || (first_word && (b == b'-' || b == b'+')) {
            i += 1;
            continue;
        }
        if b == b'\'' || b == b'"' {
            i = skip_string(bytes, i);
            previous = Some(b'"');
            first_word = false;
            continue;
        }
        if b == b'|' {
            if let Some((filter, next)) = name(code, i + 1) {
                found.push((Callable::Filter, filter));
                i = next;
            } else {
                i += 1;
            }
            previous = Some(b'a');
            first_word = false;
            continue;
        }
        if is_ident_start(b) {
            let start = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            let word = &code[start..i];
            let after_dot = previous == Some(b'.');
            if first_word && word == "filter" {
                if let Some((filter, next)) = name(code, i) {
                    found.push((Callable::Filter, filter));
                    i = next;
                }
            } else if word == "is" && !after_dot {
                let mut at = i;
                if let Some((next_word, next)) = name(code, at)
                    && next_word == "not"
                {
                    at = next;
                }
                if let Some((test, next)) = name(code, at) {
                    found.push((Callable::Test, test));
                    i = next;
                }
            }
            previous = Some(b'a');
            first_word = false;
            continue;
        }
        previous = Some(b);
        first_word = false;
        i += 1;
    }
}
