//! Recursive-descent parser for Calico's selector grammar (lowest precedence first):
//!
//! ```text
//! selector := ε | or_expr
//! or_expr  := and_expr { "||" and_expr }
//! and_expr := unary { "&&" unary }
//! unary    := { "!" } primary
//! primary  := has(k) | all() | global() | "(" or_expr ")"
//!           | k ("==" | "!=" | contains | starts with | ends with) STRING
//!           | k (in | not in) "{" [ STRING { "," STRING } [","] ] "}"
//! ```
//!
//! Chains become one `And`/`Or` node; a single operand is returned as itself, so `(x)` is `x`.
//! Recursion depth is bounded by the nesting of parentheses in the input.

use crate::ast::{Expr, ValueSet};
use crate::error::ParseError;
use crate::lexer::{Lexer, Mode, Token};

/// Deepest parenthesis nesting accepted, so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 256;

pub(crate) fn parse(input: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        lex: Lexer::new(input),
        depth: 0,
    };
    if input.bytes().all(|b| b == b' ' || b == b'\t') {
        return Ok(Expr::All);
    }
    let expr = p.or_expr()?;
    match p.lex.next(Mode::General)? {
        (_, Token::Eof) => Ok(expr),
        (pos, _) => Err(ParseError::new(
            pos,
            "unexpected content at end of selector",
        )),
    }
}

struct Parser<'a> {
    lex: Lexer<'a>,
    depth: usize,
}

impl<'a> Parser<'a> {
    /// Consumes the next token if it is `want` (lexed in `mode`); otherwise leaves the cursor.
    fn eat(&mut self, mode: Mode, want: Token<'static>) -> Result<bool, ParseError> {
        let save = self.lex.pos();
        let (_, tok) = self.lex.next(mode)?;
        if tok == want {
            Ok(true)
        } else {
            self.lex.reset(save);
            Ok(false)
        }
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let first = self.and_expr()?;
        let mut ops = vec![first];
        while self.eat(Mode::General, Token::Or)? {
            ops.push(self.and_expr()?);
        }
        Ok(if ops.len() == 1 {
            ops.pop().unwrap_or(Expr::All)
        } else {
            Expr::Or(ops)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let first = self.unary()?;
        let mut ops = vec![first];
        while self.eat(Mode::General, Token::And)? {
            ops.push(self.unary()?);
        }
        Ok(if ops.len() == 1 {
            ops.pop().unwrap_or(Expr::All)
        } else {
            Expr::And(ops)
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let mut negated = false;
        while self.eat(Mode::Operand, Token::Not)? {
            negated = !negated;
        }
        let expr = self.primary()?;
        Ok(if negated { expr.negate() } else { expr })
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let (pos, tok) = self.lex.next(Mode::Operand)?;
        match tok {
            Token::Has(k) => Ok(Expr::Has(k.to_owned())),
            Token::All => Ok(Expr::All),
            Token::Global => Ok(Expr::Global),
            Token::LParen => {
                if self.depth >= MAX_DEPTH {
                    return Err(ParseError::new(pos, "selector nested too deeply"));
                }
                self.depth += 1;
                let inner = self.or_expr()?;
                self.depth -= 1;
                match self.lex.next(Mode::General)? {
                    (_, Token::RParen) => Ok(inner),
                    (pos, _) => Err(ParseError::new(pos, "expected )")),
                }
            }
            Token::Ident(k) => self.comparison(k),
            Token::Eof => Err(ParseError::new(
                pos,
                "unexpected end of selector, expected identifier",
            )),
            Token::Str(_) => Err(ParseError::new(
                pos,
                "expected identifier (a string literal may only appear after an operator)",
            )),
            _ => Err(ParseError::new(pos, "expected identifier")),
        }
    }

    fn comparison(&mut self, key: &str) -> Result<Expr, ParseError> {
        let key = key.to_owned();
        let (pos, op) = self.lex.next(Mode::AfterLabel)?;
        let make: fn(String, String) -> Expr = match op {
            Token::Eq => Expr::Eq,
            Token::Ne => Expr::Ne,
            Token::Contains => Expr::Contains,
            Token::StartsWith => Expr::StartsWith,
            Token::EndsWith => Expr::EndsWith,
            Token::In => return Ok(Expr::In(key, self.set()?)),
            Token::NotIn => return Ok(Expr::NotIn(key, self.set()?)),
            _ => return Err(ParseError::new(pos, "expected operator after label")),
        };
        match self.lex.next(Mode::General)? {
            (_, Token::Str(v)) => Ok(make(key, v.to_owned())),
            (pos, _) => Err(ParseError::new(pos, "expected string literal")),
        }
    }

    fn set(&mut self) -> Result<ValueSet, ParseError> {
        match self.lex.next(Mode::General)? {
            (_, Token::LBrace) => {}
            (pos, _) => return Err(ParseError::new(pos, "expected set literal")),
        }
        let mut values = Vec::new();
        match self.lex.next(Mode::General)? {
            (_, Token::RBrace) => return Ok(ValueSet::new(values)),
            (_, Token::Str(v)) => values.push(v.to_owned()),
            (pos, _) => return Err(ParseError::new(pos, "expected }")),
        }
        loop {
            match self.lex.next(Mode::General)? {
                (_, Token::RBrace) => return Ok(ValueSet::new(values)),
                (_, Token::Comma) => {}
                (pos, _) => return Err(ParseError::new(pos, "expected }")),
            }
            match self.lex.next(Mode::General)? {
                (_, Token::RBrace) => return Ok(ValueSet::new(values)),
                (_, Token::Str(v)) => values.push(v.to_owned()),
                (pos, _) => return Err(ParseError::new(pos, "expected string literal or }")),
            }
        }
    }
}
