//! What one template may build. Fuel bounds the instructions a render executes, not what they
//! allocate: a single `"x" * 100000000` or a dozen `{% set s = s ~ s %}` would exhaust memory
//! with a few instructions. So every template is parsed and checked before it runs:
//!
//! - the operators that build values (`~`, `+`, `*`, `in`) and every emitted value are routed
//!   through functions that check the size of the result before building it;
//! - statements that capture output or reach other templates (`{% set %}…{% endset %}`,
//!   `{% filter %}`, `{% macro %}`, `{% call %}`, `{% include %}`, `{% import %}`,
//!   `{% extends %}`, `{% block %}`, `{% autoescape %}`, `{% do %}`, recursive loops) are
//!   refused, and so are `debug()` and names starting with `__`;
//! - Jinja's filters and functions that build values are replaced by bounded ones
//!   (see [`super::templating`]), or removed where no CRM mapping needs them.
//!
//! One render may build at most [`MAX_RENDER_BYTES`] in total, no single value may exceed
//! [`MAX_VALUE_BYTES`], and no list [`MAX_ITEMS`] items; every limit is checked before the
//! memory is taken, so a hostile template fails with an error instead of aborting the process.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::LazyLock;

use minijinja::machinery::{self, CodeGenerator, Instructions, ast};
use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Expression, State};

/// The largest value a template may build or render: one field's text, one string, one JSON
/// value.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The largest rendered size of one step (all its fields together).
pub const MAX_STEP_BYTES: usize = 1024 * 1024;
/// What one render may build in total, counting every intermediate string and list.
pub const MAX_RENDER_BYTES: usize = 4 * 1024 * 1024;
/// The most items a list built by a template may have (`range`, `list`, `+`, `*`).
pub const MAX_ITEMS: usize = 10_000;

/// Functions of Jinja's that templates cannot call: `debug()` prints the whole context.
pub const REMOVED_FUNCTIONS: &[&str] = &["debug"];
/// Filters of Jinja's that templates cannot use: they build values of unbounded size from a
/// small argument (`indent(width)`, `batch(n)`, `slice(n)`, `format`) or dump values whole.
pub const REMOVED_FILTERS: &[&str] = &["indent", "batch", "slice", "format", "pprint"];

/// What the render built so far.
#[derive(Default)]
struct Budget {
    built: usize,
}

/// A limit error for a value of `size` bytes where `limit` is allowed.
pub fn too_large(what: &str, size: usize, limit: usize) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{what} would be over the limit of {limit} bytes (at least {size})"),
    )
}

fn too_many(what: &str, count: usize) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{what} would have more than {MAX_ITEMS} items (at least {count})"),
    )
}

/// Counts `bytes` against the render's budget, before they are allocated.
pub fn charge(state: &mut State, bytes: usize) -> Result<(), Error> {
    let budget = state.get_or_insert_extension_with(Budget::default);
    budget.built = budget.built.saturating_add(bytes);
    if budget.built > MAX_RENDER_BYTES {
        return Err(too_large(
            "what this template builds",
            budget.built,
            MAX_RENDER_BYTES,
        ));
    }
    Ok(())
}

/// A writer that counts and fails once past a limit, so measuring never allocates.
struct Counter {
    len: usize,
    limit: usize,
}

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.len = self.len.saturating_add(s.len());
        if self.len > self.limit {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.len = self.len.saturating_add(buf.len());
        if self.len > self.limit {
            Err(std::io::Error::other("over the limit"))
        } else {
            Ok(buf.len())
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of a value's text, or `Err(at_least)` once it is over `limit`.
pub fn text_len(value: &Value, limit: usize) -> Result<usize, usize> {
    if let Some(text) = value.as_str() {
        return if text.len() > limit {
            Err(text.len())
        } else {
            Ok(text.len())
        };
    }
    let mut counter = Counter { len: 0, limit };
    match write!(counter, "{value}") {
        Ok(()) => Ok(counter.len),
        Err(_) => Err(counter.len),
    }
}

/// A value's text, refused when it would be longer than [`MAX_VALUE_BYTES`].
pub fn bounded_text(value: &Value) -> Result<String, Error> {
    match value.as_str() {
        Some(text) if text.len() <= MAX_VALUE_BYTES => Ok(text.to_owned()),
        _ => match text_len(value, MAX_VALUE_BYTES) {
            Ok(_) => Ok(value.to_string()),
            Err(size) => Err(too_large("the text", size, MAX_VALUE_BYTES)),
        },
    }
}

/// The size of a value as JSON (`indent` spaces when pretty), or `Err(at_least)` past `limit`.
pub fn json_len<T: serde::Serialize>(
    value: &T,
    indent: Option<usize>,
    limit: usize,
) -> Result<usize, usize> {
    let mut counter = Counter { len: 0, limit };
    let result = match indent {
        None => serde_json::to_writer(&mut counter, value),
        Some(width) => {
            let pad = vec![b' '; width];
            let formatter = serde_json::ser::PrettyFormatter::with_indent(&pad);
            let mut ser = serde_json::Serializer::with_formatter(&mut counter, formatter);
            value.serialize(&mut ser)
        }
    };
    match result {
        Ok(()) => Ok(counter.len),
        Err(_) => Err(counter.len),
    }
}

/// How many items iterating a value gives, or `Err(at_least)` past [`MAX_ITEMS`].
fn item_count(value: &Value) -> Result<usize, usize> {
    if let Some(len) = value.len() {
        return if len > MAX_ITEMS { Err(len) } else { Ok(len) };
    }
    let Ok(iter) = value.try_iter() else {
        return Ok(0);
    };
    let mut count = 0;
    for _ in iter {
        count += 1;
        if count > MAX_ITEMS {
            return Err(count);
        }
    }
    Ok(count)
}

fn is_sequence(value: &Value) -> bool {
    matches!(value.kind(), ValueKind::Seq | ValueKind::Iterable)
}

/// The operators, run by the engine itself once their result is known to be small.
static OPERATORS: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_fuel(Some(100));
    env
});

fn operator(op: &'static str) -> Expression<'static, 'static> {
    OPERATORS
        .compile_expression(op)
        .expect("the operator expressions compile")
}

static ADD: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a + b"));
static MUL: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a * b"));
static CONCAT: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a ~ b"));
static IN: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a in b"));

fn apply(op: &Expression<'static, 'static>, a: Value, b: Value) -> Result<Value, Error> {
    op.eval(minijinja::context! { a => a, b => b })
}

fn checked_text(state: &mut State, what: &str, size: usize) -> Result<(), Error> {
    if size > MAX_VALUE_BYTES {
        return Err(too_large(what, size, MAX_VALUE_BYTES));
    }
    charge(state, size)
}

fn checked_items(state: &mut State, what: &str, count: usize) -> Result<(), Error> {
    if count > MAX_ITEMS {
        return Err(too_many(what, count));
    }
    charge(state, count.saturating_mul(size_of::<Value>()))
}

/// `a ~ b`.
fn concat(state: &mut State, a: Value, b: Value) -> Result<Value, Error> {
    let left = text_len(&a, MAX_VALUE_BYTES);
    let right = text_len(&b, MAX_VALUE_BYTES);
    let size = match (left, right) {
        (Ok(l), Ok(r)) => l + r,
        (Err(n), _) | (_, Err(n)) => n,
    };
    checked_text(state, "the joined text", size)?;
    apply(&CONCAT, a, b)
}

/// `a + b`: numbers as Jinja adds them; strings and lists bounded.
fn add(state: &mut State, a: Value, b: Value) -> Result<Value, Error> {
    if let (Some(l), Some(r)) = (a.as_str(), b.as_str()) {
        checked_text(state, "the joined text", l.len().saturating_add(r.len()))?;
    } else if is_sequence(&a) && is_sequence(&b) {
        let count = match (item_count(&a), item_count(&b)) {
            (Ok(l), Ok(r)) => l + r,
            (Err(n), _) | (_, Err(n)) => n,
        };
        checked_items(state, "the joined list", count)?;
        let text = text_len(&a, MAX_RENDER_BYTES)
            .and_then(|l| text_len(&b, MAX_RENDER_BYTES).map(|r| l + r))
            .unwrap_or_else(|n| n);
        if text > MAX_RENDER_BYTES {
            return Err(too_large("the joined list", text, MAX_RENDER_BYTES));
        }
    }
    apply(&ADD, a, b)
}

/// `a * b`: numbers as Jinja multiplies them; repeated strings and lists bounded.
fn mul(state: &mut State, a: Value, b: Value) -> Result<Value, Error> {
    let repeated = if a.as_str().is_some() || is_sequence(&a) {
        Some((&a, &b))
    } else if b.as_str().is_some() || is_sequence(&b) {
        Some((&b, &a))
    } else {
        None
    };
    if let Some((item, times)) = repeated
        && let Some(n) = times.as_usize()
    {
        if let Some(text) = item.as_str() {
            checked_text(state, "the repeated text", text.len().saturating_mul(n))?;
        } else {
            let count = item_count(item).unwrap_or_else(|at_least| at_least);
            checked_items(state, "the repeated list", count.saturating_mul(n))?;
            let text = text_len(item, MAX_RENDER_BYTES)
                .unwrap_or_else(|at_least| at_least)
                .saturating_mul(n);
            if text > MAX_RENDER_BYTES {
                return Err(too_large("the repeated list", text, MAX_RENDER_BYTES));
            }
        }
    }
    apply(&MUL, a, b)
}

/// `a in b`: a non-text needle in a text is compared by its text.
fn contains(a: Value, b: Value) -> Result<Value, Error> {
    if b.as_str().is_some()
        && a.as_str().is_none()
        && let Err(size) = text_len(&a, MAX_VALUE_BYTES)
    {
        return Err(too_large("the text", size, MAX_VALUE_BYTES));
    }
    apply(&IN, a, b)
}

/// Every `{{ … }}` and every piece of text between them: what one rendered field may write.
fn emit(state: &mut State, value: Value) -> Result<Value, Error> {
    let written = state
        .get_or_insert_extension_with(Written::default)
        .0
        .saturating_add(text_len(&value, MAX_VALUE_BYTES).unwrap_or_else(|n| n));
    if written > MAX_VALUE_BYTES {
        return Err(too_large("the rendered text", written, MAX_VALUE_BYTES));
    }
    state.get_or_insert_extension_with(Written::default).0 = written;
    Ok(value)
}

/// Bytes a render wrote so far.
#[derive(Default)]
struct Written(usize);

/// `range(…)`, at most [`MAX_ITEMS`] numbers.
fn range(
    state: &mut State,
    lower: i64,
    upper: Option<i64>,
    step: Option<i64>,
) -> Result<Value, Error> {
    let (start, stop) = match upper {
        Some(upper) => (lower, upper),
        None => (0, lower),
    };
    let step = step.unwrap_or(1);
    if step == 0 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "range: step must not be zero",
        ));
    }
    let span = if step > 0 {
        (i128::from(stop) - i128::from(start)).max(0)
    } else {
        (i128::from(start) - i128::from(stop)).max(0)
    };
    let stride = i128::from(step).abs();
    let count = (span + stride - 1) / stride;
    if count > MAX_ITEMS as i128 {
        return Err(too_many(
            "range",
            usize::try_from(count).unwrap_or(usize::MAX),
        ));
    }
    checked_items(state, "range", count as usize)?;
    let items: Vec<Value> = (0..count as i64)
        .map(|i| Value::from(start + i * step))
        .collect();
    Ok(Value::from(items))
}

static JOIN: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | join(b)"));
static LIST: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | list"));
static TOJSON: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | tojson"));
static TOJSON_INDENT: LazyLock<Expression<'static, 'static>> =
    LazyLock::new(|| operator("a | tojson(b)"));
static ESCAPE: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | e"));
static SAFE: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | safe"));
static SPLIT: LazyLock<Expression<'static, 'static>> =
    LazyLock::new(|| operator("a | split(b[0], b[1])"));
static LINES: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | lines"));
static SUM: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | sum(b)"));

fn text_of(state: &mut State, value: &Value) -> Result<(), Error> {
    let size =
        text_len(value, MAX_VALUE_BYTES).map_err(|n| too_large("the text", n, MAX_VALUE_BYTES))?;
    charge(state, size)
}

/// `join(sep)`, measured before it is built.
fn join(state: &mut State, value: Value, joiner: Option<Value>) -> Result<Value, Error> {
    let joiner = joiner.unwrap_or(Value::from(""));
    let sep = text_len(&joiner, MAX_VALUE_BYTES)
        .map_err(|n| too_large("the separator", n, MAX_VALUE_BYTES))?;
    if let Ok(iter) = value.try_iter() {
        let mut size = 0usize;
        for (i, item) in iter.enumerate() {
            if i > 0 {
                size = size.saturating_add(sep);
            }
            size = size.saturating_add(text_len(&item, MAX_VALUE_BYTES).unwrap_or_else(|n| n));
            if size > MAX_VALUE_BYTES {
                return Err(too_large("the joined text", size, MAX_VALUE_BYTES));
            }
        }
        checked_text(state, "the joined text", size)?;
    }
    apply(&JOIN, value, joiner)
}

/// `replace(from, to, count)`, measured before it is built.
fn replace(
    state: &mut State,
    value: Value,
    from: Value,
    to: Value,
    count: Option<usize>,
) -> Result<Value, Error> {
    let text = bounded_text(&value)?;
    let from = bounded_text(&from)?;
    let to = bounded_text(&to)?;
    let found = if from.is_empty() {
        text.chars().count() + 1
    } else {
        text.matches(from.as_str()).count()
    };
    let found = count.map_or(found, |count| found.min(count));
    let size = (text.len() - found * from.len()).saturating_add(found.saturating_mul(to.len()));
    checked_text(state, "the replaced text", size)?;
    Ok(Value::from(match count {
        Some(count) => text.replacen(from.as_str(), &to, count),
        None => text.replace(from.as_str(), &to),
    }))
}

/// `string`, measured before it is built.
fn string(state: &mut State, value: Value) -> Result<Value, Error> {
    if value.kind() == ValueKind::String {
        return Ok(value);
    }
    text_of(state, &value)?;
    Ok(Value::from(value.to_string()))
}

/// `list`, at most [`MAX_ITEMS`] items.
fn list(state: &mut State, value: Value) -> Result<Value, Error> {
    let count = item_count(&value).unwrap_or_else(|n| n);
    checked_items(state, "the list", count)?;
    apply(&LIST, value, Value::UNDEFINED)
}

/// `tojson(indent)`, measured before it is built.
fn tojson(state: &mut State, value: Value, indent: Option<usize>) -> Result<Value, Error> {
    if indent.is_some_and(|width| width > 8) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: indent must be at most 8",
        ));
    }
    let size = json_len(&value, indent, MAX_VALUE_BYTES)
        .map_err(|n| too_large("the JSON text", n, MAX_VALUE_BYTES))?;
    charge(state, size)?;
    match indent {
        Some(width) => apply(&TOJSON_INDENT, value, Value::from(width)),
        None => apply(&TOJSON, value, Value::UNDEFINED),
    }
}

/// `escape`/`e`, `safe`, `split`, `lines`: the text they work on is measured first.
fn escape(state: &mut State, value: Value) -> Result<Value, Error> {
    text_of(state, &value)?;
    apply(&ESCAPE, value, Value::UNDEFINED)
}

fn safe(state: &mut State, value: Value) -> Result<Value, Error> {
    text_of(state, &value)?;
    apply(&SAFE, value, Value::UNDEFINED)
}

fn split(
    state: &mut State,
    value: Value,
    sep: Option<Value>,
    max: Option<Value>,
) -> Result<Value, Error> {
    text_of(state, &value)?;
    let args = Value::from(vec![
        sep.unwrap_or(Value::from(())),
        max.unwrap_or(Value::from(())),
    ]);
    apply(&SPLIT, value, args)
}

fn lines(state: &mut State, value: Value) -> Result<Value, Error> {
    text_of(state, &value)?;
    apply(&LINES, value, Value::UNDEFINED)
}

/// `sum(start)` of numbers only: adding strings or lists item by item would build unbounded
/// values out of sight of the operators' limits.
fn sum(value: Value, start: Option<Value>) -> Result<Value, Error> {
    let start = start.unwrap_or(Value::from(0));
    let numbers = start.is_number()
        && value
            .try_iter()
            .map(|mut items| items.all(|item| item.is_number()))
            .unwrap_or(true);
    if !numbers {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "sum: only numbers can be summed",
        ));
    }
    apply(&SUM, value, start)
}

/// Installs the bounded operators and `range`, and removes what templates may not use.
pub fn install(env: &mut Environment<'static>) {
    for name in REMOVED_FUNCTIONS {
        env.remove_global(name);
    }
    for name in REMOVED_FILTERS {
        env.remove_filter(name);
    }
    env.add_function("range", range);
    env.add_filter("join", join);
    env.add_filter("replace", replace);
    env.add_filter("string", string);
    env.add_filter("list", list);
    env.add_filter("tojson", tojson);
    env.add_filter("escape", escape);
    env.add_filter("e", escape);
    env.add_filter("safe", safe);
    env.add_filter("split", split);
    env.add_filter("lines", lines);
    env.add_filter("sum", sum);
    env.add_function("__concat", concat);
    env.add_function("__add", add);
    env.add_function("__mul", mul);
    env.add_function("__in", contains);
    env.add_function("__emit", emit);
}

/// A template or expression compiled with its limits.
pub struct Program<'source> {
    instructions: Instructions<'source>,
    blocks: BTreeMap<&'source str, Instructions<'source>>,
}

impl<'source> Program<'source> {
    /// A template: text with `{{ … }}` and `{% … %}`.
    pub fn template(source: &'source str) -> Result<Self, Error> {
        let parsed = machinery::parse(source, "<template>", Default::default())?;
        let bounded = stmt(&parsed)?;
        let mut generator = CodeGenerator::new("<template>", source);
        generator.compile_stmt(&bounded);
        let (instructions, blocks) = generator.finish();
        Ok(Program {
            instructions,
            blocks,
        })
    }

    /// One expression (a `{{ … }}` body or a condition).
    pub fn expression(source: &'source str) -> Result<Self, Error> {
        let parsed = machinery::parse_expr(source)?;
        let bounded = expr(&parsed)?;
        let mut generator = CodeGenerator::new("<expression>", source);
        generator.compile_expr(&bounded);
        let (instructions, blocks) = generator.finish();
        Ok(Program {
            instructions,
            blocks,
        })
    }

    /// Renders a template program to text.
    pub fn render(&self, env: &Environment<'source>, root: Value) -> Result<String, Error> {
        let mut out = String::new();
        machinery::eval(
            env,
            &self.instructions,
            root,
            &self.blocks,
            &mut machinery::make_string_output(&mut out),
            AutoEscape::None,
        )?;
        Ok(out)
    }

    /// Evaluates an expression program to its value.
    pub fn eval(&self, env: &Environment<'source>, root: Value) -> Result<Value, Error> {
        let mut out = String::new();
        let (value, _) = machinery::eval(
            env,
            &self.instructions,
            root,
            &self.blocks,
            &mut machinery::make_string_output(&mut out),
            AutoEscape::None,
        )?;
        Ok(value.unwrap_or(Value::UNDEFINED))
    }
}

fn refused(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{what} is not allowed in templates"),
    )
}

fn call<'a>(name: &'static str, args: Vec<ast::Expr<'a>>, span: machinery::Span) -> ast::Expr<'a> {
    ast::Expr::Call(ast::Spanned::new(
        ast::Call {
            expr: ast::Expr::Var(ast::Spanned::new(ast::Var { id: name }, span)),
            args: args.into_iter().map(ast::CallArg::Pos).collect(),
        },
        span,
    ))
}

type Built<'a, T> = Result<T, Error>;

fn spanned<T>(node: T, span: machinery::Span) -> ast::Spanned<T> {
    ast::Spanned::new(node, span)
}

fn body<'a>(stmts: &[ast::Stmt<'a>]) -> Built<'a, Vec<ast::Stmt<'a>>> {
    stmts.iter().map(stmt).collect()
}

fn emit_call<'a>(expr: ast::Expr<'a>, span: machinery::Span) -> ast::Stmt<'a> {
    ast::Stmt::EmitExpr(spanned(
        ast::EmitExpr {
            expr: call("__emit", vec![expr], span),
        },
        span,
    ))
}

/// The statement rebuilt with its limits, or why it is refused.
fn stmt<'a>(stmt: &ast::Stmt<'a>) -> Built<'a, ast::Stmt<'a>> {
    use ast::Stmt;
    Ok(match stmt {
        Stmt::Template(t) => Stmt::Template(spanned(
            ast::Template {
                children: body(&t.children)?,
            },
            t.span(),
        )),
        Stmt::EmitExpr(e) => emit_call(expr(&e.expr)?, e.span()),
        Stmt::EmitRaw(raw) => emit_call(
            ast::Expr::Const(spanned(
                ast::Const {
                    value: Value::from(raw.raw),
                },
                raw.span(),
            )),
            raw.span(),
        ),
        Stmt::ForLoop(f) => {
            if f.recursive {
                return Err(refused("a recursive loop"));
            }
            Stmt::ForLoop(spanned(
                ast::ForLoop {
                    target: expr(&f.target)?,
                    iter: expr(&f.iter)?,
                    filter_expr: f.filter_expr.as_ref().map(expr).transpose()?,
                    recursive: false,
                    body: body(&f.body)?,
                    else_body: body(&f.else_body)?,
                },
                f.span(),
            ))
        }
        Stmt::IfCond(c) => Stmt::IfCond(spanned(
            ast::IfCond {
                expr: expr(&c.expr)?,
                true_body: body(&c.true_body)?,
                false_body: body(&c.false_body)?,
            },
            c.span(),
        )),
        Stmt::WithBlock(w) => Stmt::WithBlock(spanned(
            ast::WithBlock {
                assignments: w
                    .assignments
                    .iter()
                    .map(|(target, value)| Ok((expr(target)?, expr(value)?)))
                    .collect::<Result<_, Error>>()?,
                body: body(&w.body)?,
            },
            w.span(),
        )),
        Stmt::Set(s) => Stmt::Set(spanned(
            ast::Set {
                target: expr(&s.target)?,
                expr: expr(&s.expr)?,
            },
            s.span(),
        )),
        Stmt::Continue(c) => Stmt::Continue(spanned(ast::Continue, c.span())),
        Stmt::Break(b) => Stmt::Break(spanned(ast::Break, b.span())),
        Stmt::SetBlock(_) => return Err(refused("{% set %}…{% endset %}")),
        Stmt::AutoEscape(_) => return Err(refused("{% autoescape %}")),
        Stmt::FilterBlock(_) => return Err(refused("{% filter %}")),
        Stmt::Block(_) => return Err(refused("{% block %}")),
        Stmt::Import(_) | Stmt::FromImport(_) => return Err(refused("{% import %}")),
        Stmt::Extends(_) => return Err(refused("{% extends %}")),
        Stmt::Include(_) => return Err(refused("{% include %}")),
        Stmt::Macro(_) => return Err(refused("{% macro %}")),
        Stmt::CallBlock(_) => return Err(refused("{% call %}")),
        Stmt::Do(_) => return Err(refused("{% do %}")),
    })
}

fn args<'a>(args: &[ast::CallArg<'a>]) -> Built<'a, Vec<ast::CallArg<'a>>> {
    args.iter()
        .map(|arg| {
            Ok(match arg {
                ast::CallArg::Pos(e) => ast::CallArg::Pos(expr(e)?),
                ast::CallArg::Kwarg(name, e) => ast::CallArg::Kwarg(name, expr(e)?),
                ast::CallArg::PosSplat(e) => ast::CallArg::PosSplat(expr(e)?),
                ast::CallArg::KwargSplat(e) => ast::CallArg::KwargSplat(expr(e)?),
            })
        })
        .collect()
}

fn exprs<'a>(items: &[ast::Expr<'a>]) -> Built<'a, Vec<ast::Expr<'a>>> {
    items.iter().map(expr).collect()
}

/// An upper bound of the size of a constant expression's value; `None` when it is not constant.
/// Numbers count as their digits, and only text and lists grow when multiplied.
fn const_size(e: &ast::Expr<'_>) -> Option<usize> {
    use ast::{BinOpKind, Expr};
    match e {
        Expr::Const(c) => Some(c.value.as_str().map_or(24, str::len)),
        Expr::List(l) => l.items.iter().map(const_size).sum::<Option<usize>>(),
        Expr::Tuple(t) => t.items.iter().map(const_size).sum::<Option<usize>>(),
        Expr::UnaryOp(u) => const_size(&u.expr),
        Expr::BinOp(b) => {
            let (left, right) = (const_size(&b.left)?, const_size(&b.right)?);
            let grows = |x: &Expr<'_>| match x {
                Expr::Const(c) => c.value.as_str().is_some(),
                _ => true,
            };
            match b.op {
                BinOpKind::Mul if grows(&b.left) || grows(&b.right) => {
                    let times = |x: &Expr<'_>| match x {
                        Expr::Const(c) => c.value.as_usize(),
                        _ => None,
                    };
                    let n = times(&b.right).or(times(&b.left)).unwrap_or(usize::MAX);
                    let size = if grows(&b.left) { left } else { right };
                    Some(size.saturating_mul(n))
                }
                _ => Some(left.saturating_add(right)),
            }
        }
        _ => None,
    }
}

/// The expression rebuilt with its limits, or why it is refused.
fn expr<'a>(e: &ast::Expr<'a>) -> Built<'a, ast::Expr<'a>> {
    use ast::{BinOpKind, Expr};
    let optional = |e: &Option<Expr<'a>>| e.as_ref().map(expr).transpose();
    Ok(match e {
        Expr::Var(var) => {
            if REMOVED_FUNCTIONS.contains(&var.id) {
                return Err(refused(&format!("{}()", var.id)));
            }
            if var.id.starts_with("__") {
                return Err(refused(&format!("the name '{}'", var.id)));
            }
            Expr::Var(spanned(ast::Var { id: var.id }, var.span()))
        }
        Expr::Const(c) => Expr::Const(spanned(
            ast::Const {
                value: c.value.clone(),
            },
            c.span(),
        )),
        Expr::Slice(s) => Expr::Slice(spanned(
            ast::Slice {
                expr: expr(&s.expr)?,
                start: optional(&s.start)?,
                stop: optional(&s.stop)?,
                step: optional(&s.step)?,
            },
            s.span(),
        )),
        Expr::UnaryOp(u) => Expr::UnaryOp(spanned(
            ast::UnaryOp {
                op: match u.op {
                    ast::UnaryOpKind::Not => ast::UnaryOpKind::Not,
                    ast::UnaryOpKind::Neg => ast::UnaryOpKind::Neg,
                },
                expr: expr(&u.expr)?,
            },
            u.span(),
        )),
        Expr::BinOp(b) => {
            // The compiler folds operations on constants while compiling, before any limit
            // could apply: refuse constant text or lists that would come out too large.
            if let Some(size) = const_size(e)
                && size > MAX_VALUE_BYTES
            {
                return Err(too_large("the constant", size, MAX_VALUE_BYTES));
            }
            let (left, right) = (expr(&b.left)?, expr(&b.right)?);
            let name = match b.op {
                BinOpKind::Add => "__add",
                BinOpKind::Mul => "__mul",
                BinOpKind::Concat => "__concat",
                BinOpKind::In => "__in",
                op => {
                    return Ok(Expr::BinOp(spanned(
                        ast::BinOp { op, left, right },
                        b.span(),
                    )));
                }
            };
            call(name, vec![left, right], b.span())
        }
        Expr::Compare(c) => Expr::Compare(spanned(
            ast::Compare {
                expr: expr(&c.expr)?,
                ops: c
                    .ops
                    .iter()
                    .map(|op| {
                        Ok(ast::CompareOp {
                            op: op.op,
                            expr: expr(&op.expr)?,
                        })
                    })
                    .collect::<Result<_, Error>>()?,
            },
            c.span(),
        )),
        Expr::IfExpr(i) => Expr::IfExpr(spanned(
            ast::IfExpr {
                test_expr: expr(&i.test_expr)?,
                true_expr: expr(&i.true_expr)?,
                false_expr: optional(&i.false_expr)?,
            },
            i.span(),
        )),
        Expr::Filter(f) => Expr::Filter(spanned(
            ast::Filter {
                name: f.name,
                expr: optional(&f.expr)?,
                args: args(&f.args)?,
            },
            f.span(),
        )),
        Expr::Test(t) => Expr::Test(spanned(
            ast::Test {
                name: t.name,
                expr: expr(&t.expr)?,
                args: args(&t.args)?,
            },
            t.span(),
        )),
        Expr::GetAttr(g) => Expr::GetAttr(spanned(
            ast::GetAttr {
                expr: expr(&g.expr)?,
                name: g.name,
            },
            g.span(),
        )),
        Expr::GetItem(g) => Expr::GetItem(spanned(
            ast::GetItem {
                expr: expr(&g.expr)?,
                subscript_expr: expr(&g.subscript_expr)?,
            },
            g.span(),
        )),
        Expr::Call(c) => Expr::Call(spanned(
            ast::Call {
                expr: expr(&c.expr)?,
                args: args(&c.args)?,
            },
            c.span(),
        )),
        Expr::List(l) => Expr::List(spanned(
            ast::List {
                items: exprs(&l.items)?,
            },
            l.span(),
        )),
        Expr::Tuple(t) => Expr::Tuple(spanned(
            ast::Tuple {
                items: exprs(&t.items)?,
            },
            t.span(),
        )),
        Expr::Map(m) => Expr::Map(spanned(
            ast::Map {
                keys: exprs(&m.keys)?,
                values: exprs(&m.values)?,
            },
            m.span(),
        )),
    })
}

#[cfg(test)]
mod tests;
