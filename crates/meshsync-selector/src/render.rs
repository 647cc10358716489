//! Canonical rendering (Calico's `Selector.String()`).
//!
//! Rules: `&&`/`||` nodes with two or more operands are wrapped in parentheses; a one-operand node
//! renders as its operand; `!` is written directly before its operand, with nested negations
//! collapsed by parity so the output re-parses to the same text. Values use `"` unless they contain
//! `"`, then `'`.

use crate::ast::Expr;

pub(crate) fn canonical(expr: &Expr) -> String {
    let mut out = String::new();
    write_expr(&mut out, expr);
    out
}

/// Strips negations and one-operand `&&`/`||` wrappers, returning the parity of the negations and
/// the node that is actually rendered. Empty `&&` is `all()`, empty `||` is `!all()`.
fn peel(mut expr: &Expr) -> (bool, &Expr) {
    let mut negated = false;
    loop {
        match expr {
            Expr::Not(inner) => {
                negated = !negated;
                expr = inner;
            }
            Expr::And(ops) | Expr::Or(ops) if ops.len() == 1 => expr = &ops[0],
            Expr::And(ops) if ops.is_empty() => return (negated, &Expr::All),
            Expr::Or(ops) if ops.is_empty() => return (!negated, &Expr::All),
            _ => return (negated, expr),
        }
    }
}

fn write_expr(out: &mut String, expr: &Expr) {
    let (negated, core) = peel(expr);
    if negated {
        out.push('!');
    }
    match core {
        Expr::All => out.push_str("all()"),
        Expr::Global => out.push_str("global()"),
        Expr::Has(k) => {
            out.push_str("has(");
            out.push_str(k);
            out.push(')');
        }
        Expr::Eq(k, v) => binary(out, k, "==", v),
        Expr::Ne(k, v) => binary(out, k, "!=", v),
        Expr::Contains(k, v) => binary(out, k, "contains", v),
        Expr::StartsWith(k, v) => binary(out, k, "starts with", v),
        Expr::EndsWith(k, v) => binary(out, k, "ends with", v),
        Expr::In(k, set) => set_op(out, k, "in", set.as_slice()),
        Expr::NotIn(k, set) => set_op(out, k, "not in", set.as_slice()),
        Expr::And(ops) => chain(out, ops, " && "),
        Expr::Or(ops) => chain(out, ops, " || "),
        Expr::Not(_) => unreachable!("peel strips every Not"),
    }
}

fn chain(out: &mut String, ops: &[Expr], sep: &str) {
    out.push('(');
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        write_expr(out, op);
    }
    out.push(')');
}

fn binary(out: &mut String, key: &str, op: &str, value: &str) {
    out.push_str(key);
    out.push(' ');
    out.push_str(op);
    out.push(' ');
    quote(out, value);
}

fn set_op(out: &mut String, key: &str, op: &str, values: &[String]) {
    out.push_str(key);
    out.push(' ');
    out.push_str(op);
    out.push_str(" {");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        quote(out, v);
    }
    out.push('}');
}

fn quote(out: &mut String, value: &str) {
    let q = if value.contains('"') { '\'' } else { '"' };
    out.push(q);
    out.push_str(value);
    out.push(q);
}
