//! Byte-level tokenizer, driven by the parser.
//!
//! Which tokens exist depends on where the parser is: `has(`/`all(`/`global(` are only functions
//! where an operand is expected, and `contains`/`in`/... are only operators straight after a label
//! (so `in in {"x"}` is valid). The parser therefore asks for the next token in a [`Mode`].
//! Every slice of the input is taken between ASCII bytes, which are always UTF-8 boundaries.

use crate::error::ParseError;

/// Longest allowed label key, in bytes.
pub(crate) const MAX_LABEL_LEN: usize = 512;

/// What the parser expects next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// An operand: functions, labels, `!`, `(`.
    Operand,
    /// Straight after a label: operator keywords, or punctuation.
    AfterLabel,
    /// Anywhere else: punctuation, strings, (unexpected) identifiers.
    General,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    Has(&'a str),
    All,
    Global,
    Ident(&'a str),
    Str(&'a str),
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    Not,
    And,
    Or,
    Contains,
    StartsWith,
    EndsWith,
    In,
    NotIn,
    Eof,
}

pub(crate) fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn reset(&mut self, pos: usize) {
        self.pos = pos;
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
    }

    /// Skips whitespace and returns the start offset of the next token with the token itself.
    pub(crate) fn next(&mut self, mode: Mode) -> Result<(usize, Token<'a>), ParseError> {
        self.skip_spaces();
        let start = self.pos;
        let Some(b) = self.peek() else {
            return Ok((start, Token::Eof));
        };
        let tok = if is_ident_byte(b) {
            match mode {
                Mode::Operand => self.operand_word()?,
                Mode::AfterLabel => self.operator_keyword()?,
                Mode::General => Token::Ident(self.ident()?),
            }
        } else {
            self.punctuation(mode)?
        };
        Ok((start, tok))
    }

    /// Reads a label key at the cursor (which must be on an identifier byte).
    fn ident(&mut self) -> Result<&'a str, ParseError> {
        let start = self.pos;
        while self.peek().is_some_and(is_ident_byte) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(ParseError::new(start, "expected identifier"));
        }
        if self.pos - start > MAX_LABEL_LEN {
            return Err(ParseError::new(start, "label too long"));
        }
        Ok(&self.src[start..self.pos])
    }

    fn eat_literal(&mut self, lit: &str) -> bool {
        if self.bytes()[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn expect_close(&mut self) -> Result<(), ParseError> {
        self.skip_spaces();
        if self.peek() == Some(b')') {
            self.pos += 1;
            Ok(())
        } else {
            Err(ParseError::new(self.pos, "expected )"))
        }
    }

    /// A function call or a label, where an operand is expected.
    fn operand_word(&mut self) -> Result<Token<'a>, ParseError> {
        if self.eat_literal("has(") {
            self.skip_spaces();
            let key = self.ident()?;
            self.expect_close()?;
            Ok(Token::Has(key))
        } else if self.eat_literal("all(") {
            self.expect_close()?;
            Ok(Token::All)
        } else if self.eat_literal("global(") {
            self.expect_close()?;
            Ok(Token::Global)
        } else {
            Ok(Token::Ident(self.ident()?))
        }
    }

    /// Tries `words` separated by zero or more spaces/tabs, ending at a non-identifier byte.
    fn try_keyword(&mut self, words: &[&str]) -> bool {
        let start = self.pos;
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                self.skip_spaces();
            }
            if !self.eat_literal(w) {
                self.pos = start;
                return false;
            }
        }
        if self.peek().is_some_and(is_ident_byte) {
            self.pos = start;
            return false;
        }
        true
    }

    fn operator_keyword(&mut self) -> Result<Token<'a>, ParseError> {
        let table: [(&[&str], Token<'a>); 5] = [
            (&["contains"], Token::Contains),
            (&["starts", "with"], Token::StartsWith),
            (&["ends", "with"], Token::EndsWith),
            (&["not", "in"], Token::NotIn),
            (&["in"], Token::In),
        ];
        for (words, tok) in table {
            if self.try_keyword(words) {
                return Ok(tok);
            }
        }
        Err(ParseError::new(self.pos, "expected operator after label"))
    }

    fn punctuation(&mut self, mode: Mode) -> Result<Token<'a>, ParseError> {
        let start = self.pos;
        let b = self.bytes()[start];
        let next = self.bytes().get(start + 1).copied();
        let (tok, len) = match (b, next) {
            (b'(', _) => (Token::LParen, 1),
            (b')', _) => (Token::RParen, 1),
            (b'{', _) => (Token::LBrace, 1),
            (b'}', _) => (Token::RBrace, 1),
            (b',', _) => (Token::Comma, 1),
            (b'=', Some(b'=')) => (Token::Eq, 2),
            (b'!', Some(b'=')) => (Token::Ne, 2),
            (b'!', _) => (Token::Not, 1),
            (b'&', Some(b'&')) => (Token::And, 2),
            (b'|', Some(b'|')) => (Token::Or, 2),
            (b'=', _) => return Err(ParseError::new(start, "expected == (lone '=')")),
            (b'&', _) => return Err(ParseError::new(start, "expected && (lone '&')")),
            (b'|', _) => return Err(ParseError::new(start, "expected || (lone '|')")),
            (b'"' | b'\'', _) => return self.string(b),
            _ => {
                let message = match mode {
                    Mode::Operand => "expected identifier",
                    Mode::AfterLabel => "expected operator after label",
                    Mode::General => "unexpected character",
                };
                return Err(ParseError::new(start, message));
            }
        };
        self.pos += len;
        Ok(tok)
    }

    /// A string literal: runs to the next matching quote, no escapes.
    fn string(&mut self, quote: u8) -> Result<Token<'a>, ParseError> {
        let start = self.pos;
        let body = start + 1;
        match self.bytes()[body..].iter().position(|&c| c == quote) {
            Some(len) => {
                self.pos = body + len + 1;
                Ok(Token::Str(&self.src[body..body + len]))
            }
            None => Err(ParseError::new(start, "unterminated string")),
        }
    }
}
