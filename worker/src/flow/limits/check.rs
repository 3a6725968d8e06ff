//! The checks a template passes before it is compiled: each statement and expression is
//! rebuilt with its limits, or refused.

use minijinja::machinery::{self, ast};
use minijinja::value::Value;
use minijinja::{Error, ErrorKind};

use super::{MAX_VALUE_BYTES, REMOVED_FUNCTIONS, too_large};

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
pub(super) fn stmt<'a>(stmt: &ast::Stmt<'a>) -> Built<'a, ast::Stmt<'a>> {
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
pub(super) fn expr<'a>(e: &ast::Expr<'a>) -> Built<'a, ast::Expr<'a>> {
    use ast::Expr;
    let optional = |e: &Option<Expr<'a>>| e.as_ref().map(expr).transpose();
    Ok(match e {
        Expr::Var(var) => variable(var)?,
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
        Expr::BinOp(b) => bin_op(e, b)?,
        Expr::Compare(c) => compare(c)?,
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

/// A variable, refused when it names a removed function or starts with `__`.
fn variable<'a>(var: &ast::Spanned<ast::Var<'a>>) -> Built<'a, ast::Expr<'a>> {
    if REMOVED_FUNCTIONS.contains(&var.id) {
        return Err(refused(&format!("{}()", var.id)));
    }
    if var.id.starts_with("__") {
        return Err(refused(&format!("the name '{}'", var.id)));
    }
    Ok(ast::Expr::Var(spanned(ast::Var { id: var.id }, var.span())))
}

/// A binary operation `e`: the operators that build values become calls of their bounded
/// versions, the others are rebuilt as they are.
fn bin_op<'a>(e: &ast::Expr<'a>, b: &ast::Spanned<ast::BinOp<'a>>) -> Built<'a, ast::Expr<'a>> {
    use ast::{BinOpKind, Expr};
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
    Ok(call(name, vec![left, right], b.span()))
}

/// A comparison with its expression and every operand rebuilt.
fn compare<'a>(c: &ast::Spanned<ast::Compare<'a>>) -> Built<'a, ast::Expr<'a>> {
    Ok(ast::Expr::Compare(spanned(
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
    )))
}
