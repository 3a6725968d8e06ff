//! The shared environment templates run in: Jinja's builtins, Tributary's filters and
//! functions, and the limits.

use std::sync::LazyLock;

use minijinja::{Environment, UndefinedBehavior};

use super::filters;
use super::secrets::{password, token};
use crate::flow::limits;

/// Instructions one template evaluation may execute.
pub const MAX_TEMPLATE_FUEL: u64 = 50_000;

static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(build_environment);

/// The shared environment: Jinja's builtins plus Tributary's filters, chainable undefined.
pub fn environment<'source>() -> &'static Environment<'source> {
    &ENVIRONMENT
}

fn build_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    // A tenant's template runs on shared workers: bound the work one render may do, so a
    // runaway loop fails that step instead of stalling the worker.
    env.set_fuel(Some(MAX_TEMPLATE_FUEL));
    env.add_filter("major_units", filters::major_units);
    env.add_filter("format_amount", filters::format_amount);
    env.add_filter("first_name", filters::first_name);
    env.add_filter("last_name", filters::last_name);
    env.add_filter("date", filters::date);
    env.add_filter("datetime", filters::datetime);
    env.add_filter("add_days", filters::add_days);
    env.add_filter("lookup", filters::lookup);
    env.add_filter("mrr", filters::mrr);
    env.add_filter("arr", filters::arr);
    env.add_filter("lower", filters::lower);
    env.add_filter("upper", filters::upper);
    env.add_filter("trim", filters::trim);
    env.add_filter("title", filters::title);
    env.add_filter("capitalize", filters::capitalize);
    super::money::install(&mut env);
    env.add_function("password", password);
    env.add_function("token", token);
    limits::install(&mut env);
    env
}
