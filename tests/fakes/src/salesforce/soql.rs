//! The fake Salesforce's SOQL: a tokenizer and a parser for the subset Tributary sends:
//! `SELECT f, … FROM Object [WHERE f op value [AND …]] [ORDER BY f [ASC|DESC], …] [LIMIT n]`,
//! where `op` is `=`, `!=`, `<`, `<=`, `>` or `>=` and a value is a quoted string, a number,
//! `true`/`false`/`null`, or an unquoted datetime literal (`2024-05-01T12:34:56Z`).

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(Op),
    Comma,
}

/// A comparison of a `WHERE` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// What a condition compares with.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Literal {
    Value(Value),
    /// An unquoted datetime literal.
    DateTime(chrono::DateTime<chrono::Utc>),
}

pub(super) struct Condition {
    pub field: String,
    pub op: Op,
    pub value: Literal,
}

pub(super) struct Query {
    pub fields: Vec<String>,
    pub object: String,
    pub conditions: Vec<Condition>,
    /// Fields to sort by, each ascending or not.
    pub order: Vec<(String, bool)>,
    pub limit: Option<usize>,
}

fn quoted(chars: &[char], i: &mut usize) -> Result<String, String> {
    let mut text = String::new();
    *i += 1;
    loop {
        match chars.get(*i) {
            None => return Err("unterminated string literal".into()),
            Some('\\') => {
                if let Some(next) = chars.get(*i + 1) {
                    text.push(*next);
                }
                *i += 2;
            }
            Some('\'') => {
                *i += 1;
                return Ok(text);
            }
            Some(other) => {
                text.push(*other);
                *i += 1;
            }
        }
    }
}

fn operator(chars: &[char], i: usize) -> Option<(Op, usize)> {
    let next = chars.get(i + 1).copied();
    match (chars[i], next) {
        ('!', Some('=')) => Some((Op::Ne, 2)),
        ('<', Some('=')) => Some((Op::Le, 2)),
        ('>', Some('=')) => Some((Op::Ge, 2)),
        ('<', _) => Some((Op::Lt, 1)),
        ('>', _) => Some((Op::Gt, 1)),
        ('=', _) => Some((Op::Eq, 1)),
        _ => None,
    }
}

fn tokenize(soql: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = soql.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            out.push(Tok::Str(quoted(&chars, &mut i)?));
        } else if let Some((op, len)) = operator(&chars, i) {
            out.push(Tok::Op(op));
            i += len;
        } else if c == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
            // A word that starts with a digit may be a datetime literal: `:` and `+` belong to it.
            let literal = c.is_ascii_digit();
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || "_.-".contains(chars[i])
                    || (literal && ":+".contains(chars[i])))
            {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            return Err(format!("unexpected token: '{c}'"));
        }
    }
    Ok(out)
}

fn keyword(tok: Option<&Tok>, word: &str) -> bool {
    matches!(tok, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word))
}

fn literal(tok: Option<&Tok>) -> Result<Literal, String> {
    Ok(Literal::Value(match tok {
        Some(Tok::Str(s)) => json!(s),
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => json!(true),
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => json!(false),
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
        Some(Tok::Word(w)) if w.contains('T') && w.contains(':') => {
            return chrono::DateTime::parse_from_rfc3339(w)
                .map(|at| Literal::DateTime(at.with_timezone(&chrono::Utc)))
                .map_err(|_| format!("invalid datetime literal: {w}"));
        }
        Some(Tok::Word(w)) => match w.parse::<f64>() {
            Ok(n) => json!(n),
            Err(_) => return Err(format!("unexpected value: {w}")),
        },
        _ => return Err("expecting a value".into()),
    }))
}

fn word(tok: Option<&Tok>, what: &str) -> Result<String, String> {
    match tok {
        Some(Tok::Word(w)) => Ok(w.clone()),
        _ => Err(format!("expecting {what}")),
    }
}

/// `f op value [AND …]`, from `toks[*i]`.
fn conditions(toks: &[Tok], i: &mut usize) -> Result<Vec<Condition>, String> {
    let mut out = Vec::new();
    loop {
        let field = word(toks.get(*i), "a field in WHERE")?;
        let op = match toks.get(*i + 1) {
            Some(Tok::Op(op)) => *op,
            _ => return Err(format!("unexpected token after {field}")),
        };
        let value = literal(toks.get(*i + 2))?;
        out.push(Condition { field, op, value });
        *i += 3;
        if keyword(toks.get(*i), "AND") {
            *i += 1;
        } else {
            return Ok(out);
        }
    }
}

/// `f [ASC|DESC], …`, from `toks[*i]`.
fn order(toks: &[Tok], i: &mut usize) -> Result<Vec<(String, bool)>, String> {
    let mut out = Vec::new();
    loop {
        let field = word(toks.get(*i), "a field in ORDER BY")?;
        *i += 1;
        let mut ascending = true;
        if keyword(toks.get(*i), "ASC") {
            *i += 1;
        } else if keyword(toks.get(*i), "DESC") {
            ascending = false;
            *i += 1;
        }
        out.push((field, ascending));
        if toks.get(*i) == Some(&Tok::Comma) {
            *i += 1;
        } else {
            return Ok(out);
        }
    }
}

pub(super) fn parse_soql(soql: &str) -> Result<Query, String> {
    let toks = tokenize(soql)?;
    let mut i = 0;
    if !keyword(toks.get(i), "SELECT") {
        return Err("expecting SELECT".into());
    }
    i += 1;
    let mut fields: Vec<String> = Vec::new();
    loop {
        let field = word(toks.get(i), "a field name")?;
        if fields.iter().any(|f| f.eq_ignore_ascii_case(&field)) {
            return Err(format!("duplicate field selected: {field}"));
        }
        fields.push(field);
        i += 1;
        if toks.get(i) == Some(&Tok::Comma) {
            i += 1;
        } else {
            break;
        }
    }
    if !keyword(toks.get(i), "FROM") {
        return Err("expecting FROM".into());
    }
    let object = word(toks.get(i + 1), "an object name")?;
    i += 2;
    let mut where_ = Vec::new();
    if keyword(toks.get(i), "WHERE") {
        i += 1;
        where_ = conditions(&toks, &mut i)?;
    }
    let mut sort = Vec::new();
    if keyword(toks.get(i), "ORDER") && keyword(toks.get(i + 1), "BY") {
        i += 2;
        sort = order(&toks, &mut i)?;
    }
    let mut limit = None;
    if keyword(toks.get(i), "LIMIT") {
        limit = match toks.get(i + 1) {
            Some(Tok::Word(w)) => Some(w.parse().map_err(|_| "bad LIMIT".to_string())?),
            _ => return Err("expecting a number after LIMIT".into()),
        };
        i += 2;
    }
    if i != toks.len() {
        return Err(format!("unexpected token at position {i}"));
    }
    Ok(Query {
        fields,
        object,
        conditions: where_,
        order: sort,
        limit,
    })
}
