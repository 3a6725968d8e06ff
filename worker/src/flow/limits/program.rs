//! Compiling a template or expression after its checks, and running it.

use std::collections::BTreeMap;

use minijinja::machinery::{self, CodeGenerator, Instructions};
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error};

use super::check::{expr, stmt};

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
