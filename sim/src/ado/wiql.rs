//! A small WIQL parser and evaluator for the subset the client and user filters use:
//! `SELECT … FROM WorkItems [WHERE …] [ORDER BY …]` with AND/OR/NOT, comparisons, IN, CONTAINS,
//! UNDER, `@today ± N` and `@project`. Error messages follow the real service's TF codes.

use std::borrow::Cow;
use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// A field the simulated work items carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Id,
    TeamProject,
    State,
    WorkItemType,
    ChangedDate,
    CreatedDate,
    AreaPath,
    IterationPath,
    Title,
    Reason,
    Priority,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Str,
    Date,
}

const FIELDS: &[(Field, &str, &str)] = &[
    (Field::Id, "System.Id", "ID"),
    (Field::TeamProject, "System.TeamProject", "Team Project"),
    (Field::State, "System.State", "State"),
    (Field::WorkItemType, "System.WorkItemType", "Work Item Type"),
    (Field::ChangedDate, "System.ChangedDate", "Changed Date"),
    (Field::CreatedDate, "System.CreatedDate", "Created Date"),
    (Field::AreaPath, "System.AreaPath", "Area Path"),
    (
        Field::IterationPath,
        "System.IterationPath",
        "Iteration Path",
    ),
    (Field::Title, "System.Title", "Title"),
    (Field::Reason, "System.Reason", "Reason"),
    (
        Field::Priority,
        "Microsoft.VSTS.Common.Priority",
        "Priority",
    ),
];

impl Field {
    /// Resolves a reference name (`System.State`) or friendly name (`State`), case-insensitively.
    pub fn resolve(name: &str) -> Option<Field> {
        let name = name.trim();
        FIELDS
            .iter()
            .find(|(_, r, n)| r.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(name))
            .map(|(f, _, _)| *f)
    }
    pub fn reference_name(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(f, _, _)| *f == self)
            .map_or("", |x| x.1)
    }
    pub fn display_name(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(f, _, _)| *f == self)
            .map_or("", |x| x.2)
    }
    fn kind(self) -> Kind {
        match self {
            Field::Id | Field::Priority => Kind::Int,
            Field::ChangedDate | Field::CreatedDate => Kind::Date,
            _ => Kind::Str,
        }
    }
}

/// What a query failure looks like on the wire: HTTP 400 with this message and type key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WiqlError {
    pub message: String,
    pub type_key: &'static str,
}

fn syntax(detail: &str, near: &str) -> WiqlError {
    WiqlError {
        message: format!(
            "TF51006: The query statement is invalid. {detail} The error is caused by «{near}»."
        ),
        type_key: "WorkItemTrackingQuerySyntaxException",
    }
}

fn no_field(name: &str) -> WiqlError {
    WiqlError {
        message: format!(
            "TF51005: The query references a field that does not exist. The error is caused by «{name}»."
        ),
        type_key: "WorkItemTrackingQueryFieldDoesNotExistException",
    }
}

// ---------------------------------------------------------------- lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Field(String),
    Word(String),
    Str(String),
    Num(f64),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Macro(String),
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Field(f) => format!("[{f}]"),
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Num(n) => n.to_string(),
            Tok::Op(o) => o.to_string(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Plus => "+".into(),
            Tok::Minus => "-".into(),
            Tok::Macro(m) => format!("@{m}"),
        }
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

fn lex(src: &str) -> Result<Vec<Tok>, WiqlError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '[' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == ']')
                    .map(|p| start + p)
                    .ok_or_else(|| {
                        syntax("Expecting ']'.", &chars[i..].iter().collect::<String>())
                    })?;
                out.push(Tok::Field(chars[start..end].iter().collect()));
                i = end + 1;
            }
            '\'' | '"' => {
                let q = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(syntax("Unterminated string.", &s)),
                        // WIQL escapes a quote by doubling it.
                        Some(&ch) if ch == q && chars.get(i + 1) == Some(&q) => {
                            s.push(q);
                            i += 2;
                        }
                        Some(&ch) if ch == q => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '+' => {
                out.push(Tok::Plus);
                i += 1;
            }
            '-' => {
                out.push(Tok::Minus);
                i += 1;
            }
            '=' => {
                out.push(Tok::Op("="));
                i += 1;
            }
            '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let op = match (c, next) {
                    ('<', Some('>')) => "<>",
                    ('<', Some('=')) => "<=",
                    ('>', Some('=')) => ">=",
                    ('<', _) => "<",
                    _ => ">",
                };
                i += op.len();
                out.push(Tok::Op(op));
            }
            '@' => {
                let start = i + 1;
                i = start;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Macro(chars[start..i].iter().collect()));
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n = text
                    .parse()
                    .map_err(|_| syntax("Expecting a number.", &text))?;
                out.push(Tok::Num(n));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
            other => return Err(syntax("Unexpected character.", &other.to_string())),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- parser (syntax tree)

#[derive(Clone, Debug)]
enum Lit {
    Str(String),
    Num(f64),
    Today(f64),
    Project,
}

#[derive(Clone, Debug)]
enum Ast {
    And(Vec<Ast>),
    Or(Vec<Ast>),
    Not(Box<Ast>),
    Cmp(String, &'static str, Lit),
    In(String, Vec<Lit>, bool),
    Contains(String, Lit, bool),
    Under(String, Lit, bool),
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

const KEYWORDS: &[&str] = &[
    "select", "from", "where", "order", "by", "asc", "desc", "and", "or", "not", "in", "contains",
    "under", "asof",
];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn near(&self) -> String {
        self.peek()
            .map_or_else(|| "<end of query>".into(), Tok::text)
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_kw(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect_kw(&mut self, kw: &str) -> Result<(), WiqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(syntax(
                &format!("Expecting '{}'.", kw.to_uppercase()),
                &self.near(),
            ))
        }
    }
    fn field(&mut self) -> Result<String, WiqlError> {
        match self.peek() {
            Some(Tok::Field(f)) => {
                let f = f.clone();
                self.pos += 1;
                Ok(f)
            }
            Some(Tok::Word(w)) if !KEYWORDS.contains(&w.to_ascii_lowercase().as_str()) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(syntax("Expecting field name.", &self.near())),
        }
    }
    fn or(&mut self) -> Result<Ast, WiqlError> {
        let mut parts = vec![self.and()?];
        while self.eat_kw("or") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Ast::Or(parts)
        })
    }
    fn and(&mut self) -> Result<Ast, WiqlError> {
        let mut parts = vec![self.unary()?];
        while self.eat_kw("and") {
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Ast::And(parts)
        })
    }
    fn unary(&mut self) -> Result<Ast, WiqlError> {
        if self.eat_kw("not") {
            return Ok(Ast::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or()?;
            if self.next() != Some(Tok::RParen) {
                return Err(syntax("Expecting ')'.", &self.near()));
            }
            return Ok(e);
        }
        self.condition()
    }
    fn condition(&mut self) -> Result<Ast, WiqlError> {
        let field = self.field()?;
        let negated = self.eat_kw("not");
        if self.eat_kw("in") {
            if self.next() != Some(Tok::LParen) {
                return Err(syntax("Expecting '('.", &self.near()));
            }
            let mut values = vec![self.literal()?];
            loop {
                match self.next() {
                    Some(Tok::Comma) => values.push(self.literal()?),
                    Some(Tok::RParen) => break,
                    _ => return Err(syntax("Expecting ',' or ')'.", &self.near())),
                }
            }
            return Ok(Ast::In(field, values, negated));
        }
        if self.eat_kw("contains") {
            // `CONTAINS WORDS` is full-text search; a substring match is close enough here.
            self.eat_kw("words");
            return Ok(Ast::Contains(field, self.literal()?, negated));
        }
        if self.eat_kw("under") {
            return Ok(Ast::Under(field, self.literal()?, negated));
        }
        if negated {
            return Err(syntax(
                "Expecting 'IN', 'CONTAINS' or 'UNDER'.",
                &self.near(),
            ));
        }
        match self.next() {
            Some(Tok::Op(op)) => Ok(Ast::Cmp(field, op, self.literal()?)),
            _ => {
                self.pos -= 1;
                Err(syntax("Expecting comparison operator.", &self.near()))
            }
        }
    }
    fn literal(&mut self) -> Result<Lit, WiqlError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Num(n)) => Ok(Lit::Num(n)),
            Some(Tok::Minus) => match self.next() {
                Some(Tok::Num(n)) => Ok(Lit::Num(-n)),
                _ => Err(syntax("Expecting a number.", &self.near())),
            },
            Some(Tok::Macro(m)) if m.eq_ignore_ascii_case("today") => {
                let sign = match self.peek() {
                    Some(Tok::Plus) => 1.0,
                    Some(Tok::Minus) => -1.0,
                    _ => return Ok(Lit::Today(0.0)),
                };
                self.pos += 1;
                match self.next() {
                    Some(Tok::Num(n)) => Ok(Lit::Today(sign * n)),
                    _ => Err(syntax("Expecting a number.", &self.near())),
                }
            }
            Some(Tok::Macro(m)) if m.eq_ignore_ascii_case("project") => Ok(Lit::Project),
            Some(Tok::Macro(m)) => Err(WiqlError {
                message: format!(
                    "TF51011: The specified macro does not exist. The error is caused by «@{m}»."
                ),
                type_key: "WorkItemTrackingQueryMacroException",
            }),
            _ => {
                self.pos = self.pos.saturating_sub(1);
                Err(syntax("Expecting a value.", &self.near()))
            }
        }
    }
}

// ---------------------------------------------------------------- compiled query

#[derive(Clone, Debug)]
enum Val {
    Int(i64),
    /// Lowercased: WIQL string comparisons ignore case.
    Str(String),
    /// Milliseconds since the epoch.
    Date(i64),
}

#[derive(Clone, Debug)]
enum Pred {
    And(Vec<Pred>),
    Or(Vec<Pred>),
    Not(Box<Pred>),
    Cmp(Field, &'static str, Val),
    In(Field, Vec<Val>),
    Contains(Field, String),
    Under(Field, String),
}

/// Read access to one work item's field values, supplied by the organisation.
pub trait Row {
    fn int(&self, f: Field) -> i64;
    fn text(&self, f: Field) -> Cow<'_, str>;
    fn date_ms(&self, f: Field) -> i64;
}

/// Where a query runs: the project in the URL (for `@project`), today's start, and precision.
pub struct Context<'a> {
    pub project: Option<&'a str>,
    pub today_start_ms: i64,
    pub time_precision: bool,
}

/// A parsed and type-checked query.
#[derive(Debug)]
pub struct Query {
    pub columns: Vec<Field>,
    pub order: Vec<(Field, bool)>,
    pred: Option<Pred>,
    time_precision: bool,
}

/// Restrictions read off the top-level AND chain, used to walk id ranges instead of scanning.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// Lowercased project names the query is limited to, if any.
    pub projects: Option<Vec<String>>,
    pub id_min: u64,
    pub id_max: u64,
}

const DAY_MS: i64 = 86_400_000;

pub fn parse(src: &str, ctx: &Context<'_>) -> Result<Query, WiqlError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
    };
    p.expect_kw("select")?;
    let mut columns = vec![resolve(&p.field()?)?];
    while p.peek() == Some(&Tok::Comma) {
        p.pos += 1;
        columns.push(resolve(&p.field()?)?);
    }
    p.expect_kw("from")?;
    match p.next() {
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("workitems") => {}
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("workitemlinks") => {
            return Err(syntax(
                "Link queries are not supported by the simulator.",
                &w,
            ));
        }
        other => {
            return Err(syntax(
                "Expecting 'WorkItems'.",
                &other.map_or_else(|| "<end of query>".into(), |t| t.text()),
            ));
        }
    }
    let ast = if p.eat_kw("where") {
        Some(p.or()?)
    } else {
        None
    };
    let mut order = Vec::new();
    if p.eat_kw("order") {
        p.expect_kw("by")?;
        loop {
            let f = resolve(&p.field()?)?;
            let desc = if p.eat_kw("desc") {
                true
            } else {
                p.eat_kw("asc");
                false
            };
            order.push((f, desc));
            if p.peek() == Some(&Tok::Comma) {
                p.pos += 1;
            } else {
                break;
            }
        }
    }
    if p.peek().is_some() {
        return Err(syntax("Unexpected text after the query.", &p.near()));
    }
    let pred = ast.map(|a| compile(&a, ctx)).transpose()?;
    Ok(Query {
        columns,
        order,
        pred,
        time_precision: ctx.time_precision,
    })
}

fn resolve(name: &str) -> Result<Field, WiqlError> {
    Field::resolve(name).ok_or_else(|| no_field(&format!("[{name}]")))
}

fn compile(ast: &Ast, ctx: &Context<'_>) -> Result<Pred, WiqlError> {
    Ok(match ast {
        Ast::And(v) => Pred::And(
            v.iter()
                .map(|a| compile(a, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Ast::Or(v) => Pred::Or(
            v.iter()
                .map(|a| compile(a, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Ast::Not(a) => Pred::Not(Box::new(compile(a, ctx)?)),
        Ast::Cmp(f, op, lit) => {
            let field = resolve(f)?;
            let clause = format!("[{}] {op} {}", field.reference_name(), lit_text(lit));
            Pred::Cmp(field, op, value(field, lit, ctx, &clause)?)
        }
        Ast::In(f, lits, neg) => {
            let field = resolve(f)?;
            let clause = format!("[{}] IN (…)", field.reference_name());
            let vals = lits
                .iter()
                .map(|l| value(field, l, ctx, &clause))
                .collect::<Result<_, _>>()?;
            negate(Pred::In(field, vals), *neg)
        }
        Ast::Contains(f, lit, neg) => {
            let field = resolve(f)?;
            let clause = format!("[{}] CONTAINS {}", field.reference_name(), lit_text(lit));
            let Val::Str(s) = value_as_str(lit, ctx, &clause)? else {
                unreachable!()
            };
            negate(Pred::Contains(field, s), *neg)
        }
        Ast::Under(f, lit, neg) => {
            let field = resolve(f)?;
            let clause = format!("[{}] UNDER {}", field.reference_name(), lit_text(lit));
            let Val::Str(s) = value_as_str(lit, ctx, &clause)? else {
                unreachable!()
            };
            negate(Pred::Under(field, s), *neg)
        }
    })
}

fn negate(p: Pred, neg: bool) -> Pred {
    if neg { Pred::Not(Box::new(p)) } else { p }
}

fn lit_text(l: &Lit) -> String {
    match l {
        Lit::Str(s) => format!("'{s}'"),
        Lit::Num(n) => n.to_string(),
        Lit::Today(0.0) => "@today".into(),
        Lit::Today(n) => format!("@today {n:+}"),
        Lit::Project => "@project".into(),
    }
}

fn mismatch(clause: &str) -> WiqlError {
    WiqlError {
        message: format!(
            "TF51010: The value in the query is not compatible with the type of the field. The error is caused by «{clause}»."
        ),
        type_key: "WorkItemTrackingQueryInvalidValueException",
    }
}

fn value_as_str(lit: &Lit, ctx: &Context<'_>, clause: &str) -> Result<Val, WiqlError> {
    match lit {
        Lit::Str(s) => Ok(Val::Str(s.to_lowercase())),
        Lit::Num(n) => Ok(Val::Str(n.to_string())),
        Lit::Project => project_val(ctx, clause),
        Lit::Today(_) => Err(mismatch(clause)),
    }
}

fn project_val(ctx: &Context<'_>, clause: &str) -> Result<Val, WiqlError> {
    ctx.project
        .map(|p| Val::Str(p.to_lowercase()))
        .ok_or_else(|| WiqlError {
            message: format!(
                "TF51011: The @project macro can only be used in the context of a project. The error is caused by «{clause}»."
            ),
            type_key: "WorkItemTrackingQueryMacroException",
        })
}

fn value(field: Field, lit: &Lit, ctx: &Context<'_>, clause: &str) -> Result<Val, WiqlError> {
    match field.kind() {
        Kind::Int => match lit {
            Lit::Num(n) if n.fract() == 0.0 => Ok(Val::Int(*n as i64)),
            Lit::Str(s) => s.trim().parse().map(Val::Int).map_err(|_| mismatch(clause)),
            _ => Err(mismatch(clause)),
        },
        Kind::Str => value_as_str(lit, ctx, clause),
        Kind::Date => match lit {
            Lit::Today(days) => Ok(Val::Date(
                ctx.today_start_ms + (days * DAY_MS as f64).round() as i64,
            )),
            Lit::Str(s) => {
                let (t, has_time) = parse_datetime(s).ok_or_else(|| mismatch(clause))?;
                if has_time && !ctx.time_precision {
                    return Err(WiqlError {
                        message: format!(
                            "You cannot supply a time with the date when running a query using date precision. The error is caused by «{clause}»."
                        ),
                        type_key: "WorkItemTrackingQueryInvalidValueException",
                    });
                }
                Ok(Val::Date(t.timestamp_millis()))
            }
            _ => Err(mismatch(clause)),
        },
    }
}

/// Parses the date forms clients send: ISO-8601 with `T` or a space (Python's `str()` form),
/// with or without offset and fraction, a bare date, or a US `M/D/YYYY` date. Returns the instant
/// and whether a time of day was given.
pub fn parse_datetime(s: &str) -> Option<(DateTime<Utc>, bool)> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some((t.with_timezone(&Utc), true));
    }
    let t_form = s.replacen(' ', "T", 1);
    if let Ok(t) = DateTime::parse_from_rfc3339(&t_form) {
        return Some((t.with_timezone(&Utc), true));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%m/%d/%YT%H:%M:%S",
        "%m/%d/%YT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(&t_form, fmt) {
            return Some((Utc.from_utc_datetime(&n), true));
        }
    }
    for fmt in ["%Y-%m-%d", "%m/%d/%Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, fmt) {
            return Some((Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?), false));
        }
    }
    None
}

impl Query {
    /// Reads project and id restrictions off the top-level AND chain (the client's paging shape
    /// `[System.TeamProject] = 'P' AND … AND [System.Id] > N`), so evaluation walks only that range.
    pub fn plan(&self) -> Plan {
        let mut plan = Plan {
            projects: None,
            id_min: 0,
            id_max: u64::MAX,
        };
        let mut conjuncts = Vec::new();
        if let Some(p) = &self.pred {
            collect_conjuncts(p, &mut conjuncts);
        }
        for c in conjuncts {
            match c {
                Pred::Cmp(Field::TeamProject, "=", Val::Str(s)) => {
                    restrict(&mut plan.projects, vec![s.clone()]);
                }
                Pred::In(Field::TeamProject, vals) => {
                    let names = vals
                        .iter()
                        .filter_map(|v| match v {
                            Val::Str(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect();
                    restrict(&mut plan.projects, names);
                }
                Pred::Cmp(Field::Id, op, Val::Int(n)) => {
                    let n = *n;
                    let (lo, hi) = match *op {
                        "=" => (n, n),
                        ">" => (n.saturating_add(1), i64::MAX),
                        ">=" => (n, i64::MAX),
                        "<" => (i64::MIN, n.saturating_sub(1)),
                        "<=" => (i64::MIN, n),
                        _ => (i64::MIN, i64::MAX),
                    };
                    plan.id_min = plan.id_min.max(lo.max(0) as u64);
                    plan.id_max = plan.id_max.min(hi.max(0) as u64);
                    if hi < 0 {
                        plan.id_max = 0;
                        plan.id_min = 1;
                    }
                }
                _ => {}
            }
        }
        plan
    }

    pub fn matches(&self, row: &dyn Row) -> bool {
        self.pred.as_ref().is_none_or(|p| self.eval(p, row))
    }

    fn eval(&self, p: &Pred, row: &dyn Row) -> bool {
        match p {
            Pred::And(v) => v.iter().all(|p| self.eval(p, row)),
            Pred::Or(v) => v.iter().any(|p| self.eval(p, row)),
            Pred::Not(p) => !self.eval(p, row),
            Pred::Cmp(f, op, v) => {
                let ord = self.compare(*f, v, row);
                match *op {
                    "=" => ord == Ordering::Equal,
                    "<>" => ord != Ordering::Equal,
                    ">" => ord == Ordering::Greater,
                    ">=" => ord != Ordering::Less,
                    "<" => ord == Ordering::Less,
                    _ => ord != Ordering::Greater,
                }
            }
            Pred::In(f, vals) => vals
                .iter()
                .any(|v| self.compare(*f, v, row) == Ordering::Equal),
            Pred::Contains(f, s) => row.text(*f).to_lowercase().contains(s.as_str()),
            Pred::Under(f, s) => {
                let t = row.text(*f).to_lowercase();
                t == *s || (t.starts_with(s.as_str()) && t[s.len()..].starts_with('\\'))
            }
        }
    }

    /// Orders the item's value against the literal; dates compare by day unless `timePrecision`.
    fn compare(&self, f: Field, v: &Val, row: &dyn Row) -> Ordering {
        match v {
            Val::Int(n) => row.int(f).cmp(n),
            Val::Str(s) => match f.kind() {
                Kind::Int => row.int(f).to_string().cmp(s),
                _ => row.text(f).to_lowercase().as_str().cmp(s.as_str()),
            },
            Val::Date(ms) => {
                let d = row.date_ms(f);
                if self.time_precision {
                    d.cmp(ms)
                } else {
                    d.div_euclid(DAY_MS).cmp(&ms.div_euclid(DAY_MS))
                }
            }
        }
    }

    /// True when results come out in ascending id order with no sorting needed.
    pub fn order_is_id(&self) -> Option<bool> {
        match self.order.as_slice() {
            [] => Some(false),
            [(Field::Id, desc)] => Some(*desc),
            _ => None,
        }
    }

    pub fn sort_key(&self, row: &dyn Row) -> Vec<SortKey> {
        self.order
            .iter()
            .map(|(f, _)| match f.kind() {
                Kind::Int => SortKey::Int(row.int(*f)),
                Kind::Date => SortKey::Int(row.date_ms(*f)),
                Kind::Str => SortKey::Str(row.text(*f).to_lowercase()),
            })
            .collect()
    }

    pub fn cmp_keys(&self, a: &[SortKey], b: &[SortKey]) -> Ordering {
        for ((x, y), (_, desc)) in a.iter().zip(b).zip(&self.order) {
            let o = x.cmp(y);
            if o != Ordering::Equal {
                return if *desc { o.reverse() } else { o };
            }
        }
        Ordering::Equal
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortKey {
    Int(i64),
    Str(String),
}

/// Flattens nested ANDs (a user filter in parentheses may hold its own AND chain).
fn collect_conjuncts<'a>(p: &'a Pred, out: &mut Vec<&'a Pred>) {
    match p {
        Pred::And(v) => v.iter().for_each(|c| collect_conjuncts(c, out)),
        other => out.push(other),
    }
}

fn restrict(cur: &mut Option<Vec<String>>, names: Vec<String>) {
    *cur = Some(match cur.take() {
        None => names,
        Some(prev) => prev.into_iter().filter(|p| names.contains(p)).collect(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item {
        id: i64,
        project: &'static str,
        state: &'static str,
        wtype: &'static str,
        area: &'static str,
        title: &'static str,
        changed: i64,
    }

    impl Row for Item {
        fn int(&self, f: Field) -> i64 {
            match f {
                Field::Id => self.id,
                _ => 2,
            }
        }
        fn text(&self, f: Field) -> Cow<'_, str> {
            Cow::Borrowed(match f {
                Field::TeamProject => self.project,
                Field::State => self.state,
                Field::WorkItemType => self.wtype,
                Field::AreaPath => self.area,
                Field::Title => self.title,
                _ => "",
            })
        }
        fn date_ms(&self, _: Field) -> i64 {
            self.changed
        }
    }

    const TODAY: i64 = 20_000 * DAY_MS;

    fn ctx(precise: bool) -> Context<'static> {
        Context {
            project: Some("Mobile App"),
            today_start_ms: TODAY,
            time_precision: precise,
        }
    }

    fn items() -> Vec<Item> {
        let mk = |id, project, state, wtype, area, title, days_ago: i64| Item {
            id,
            project,
            state,
            wtype,
            area,
            title,
            changed: TODAY - days_ago * DAY_MS + 3_600_000,
        };
        vec![
            mk(1, "Platform", "New", "Bug", "Platform", "Fix login", 1),
            mk(
                2,
                "Platform",
                "Active",
                "Task",
                "Platform\\Backend",
                "Add cache",
                10,
            ),
            mk(
                3,
                "Mobile App",
                "Closed",
                "Bug",
                "Mobile App\\Frontend",
                "It's broken",
                3,
            ),
            mk(
                4,
                "Mobile App",
                "Active",
                "User Story",
                "Mobile App",
                "Login page",
                30,
            ),
            mk(
                5,
                "Platform",
                "Removed",
                "Epic",
                "Platformer",
                "Big plan",
                0,
            ),
        ]
    }

    fn run(q: &str) -> Vec<i64> {
        run_with(q, false)
    }

    fn run_with(q: &str, precise: bool) -> Vec<i64> {
        let q = parse(q, &ctx(precise)).unwrap();
        items()
            .iter()
            .filter(|i| q.matches(*i))
            .map(|i| i.id)
            .collect()
    }

    #[test]
    fn and_or_and_parentheses_follow_precedence() {
        assert_eq!(
            run(
                "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = 'platform' AND ([System.State] = 'New' OR [System.State] = 'Active')"
            ),
            vec![1, 2]
        );
        // AND binds tighter than OR.
        assert_eq!(
            run(
                "SELECT [Id] FROM WorkItems WHERE [System.State] = 'New' OR [System.State] = 'Active' AND [System.TeamProject] = 'Mobile App'"
            ),
            vec![1, 4]
        );
        assert_eq!(
            run("select [Id] from workitems where not ([System.WorkItemType] = 'Bug')"),
            vec![2, 4, 5]
        );
    }

    #[test]
    fn in_and_not_in_match_lists() {
        assert_eq!(
            run("SELECT [System.Id] FROM WorkItems WHERE [System.State] IN ('New', 'Closed')"),
            vec![1, 3]
        );
        assert_eq!(
            run(
                "SELECT [System.Id] FROM WorkItems WHERE [System.State] NOT IN ('Removed', 'Closed') AND [System.Id] <> 1"
            ),
            vec![2, 4]
        );
    }

    #[test]
    fn contains_under_and_quote_escape() {
        assert_eq!(
            run("SELECT [System.Id] FROM WorkItems WHERE [System.Title] CONTAINS 'login'"),
            vec![1, 4]
        );
        assert_eq!(
            run("SELECT [System.Id] FROM WorkItems WHERE [System.Title] = 'It''s broken'"),
            vec![3]
        );
        assert_eq!(
            run("SELECT [System.Id] FROM WorkItems WHERE [System.AreaPath] UNDER 'Platform'"),
            vec![1, 2]
        );
    }

    #[test]
    fn today_minus_days_and_project_macro() {
        assert_eq!(
            run("SELECT [System.Id] FROM WorkItems WHERE [System.ChangedDate] >= @today - 7"),
            vec![1, 3, 5]
        );
        assert_eq!(
            run("SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project"),
            vec![3, 4]
        );
    }

    #[test]
    fn date_literals_need_time_precision_for_a_time_of_day() {
        let q = "SELECT [System.Id] FROM WorkItems WHERE [System.ChangedDate] >= '2024-10-04T10:00:00Z'";
        let err = parse(q, &ctx(false)).unwrap_err();
        assert!(
            err.message.starts_with("You cannot supply a time"),
            "{err:?}"
        );
        assert!(parse(q, &ctx(true)).is_ok());
        // A bare date is fine either way.
        let q = "SELECT [System.Id] FROM WorkItems WHERE [System.ChangedDate] >= '2024-10-04'";
        assert!(parse(q, &ctx(false)).is_ok());
    }

    #[test]
    fn unknown_fields_and_bad_syntax_are_rejected() {
        let err = parse(
            "SELECT [System.Id] FROM WorkItems WHERE [Custom.Nope] = 1",
            &ctx(false),
        )
        .unwrap_err();
        assert!(err.message.starts_with("TF51005"), "{err:?}");
        let err = parse(
            "SELECT [System.Id] FROM WorkItems WHERE [System.State] 'x'",
            &ctx(false),
        )
        .unwrap_err();
        assert!(err.message.starts_with("TF51006"), "{err:?}");
        let err = parse("SELECT [System.Id] WorkItems", &ctx(false)).unwrap_err();
        assert!(err.message.contains("FROM"), "{err:?}");
    }

    #[test]
    fn plan_reads_project_and_id_range_from_the_and_chain() {
        let q = parse(
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = 'Platform' AND ([System.State] = 'New') AND [System.Id] > 19999 AND [System.Id] <= 40000 ORDER BY [System.Id] ASC",
            &ctx(false),
        )
        .unwrap();
        assert_eq!(
            q.plan(),
            Plan {
                projects: Some(vec!["platform".into()]),
                id_min: 20_000,
                id_max: 40_000
            }
        );
        assert_eq!(q.order_is_id(), Some(false));
        let q = parse(
            "SELECT [System.Id] FROM WorkItems WHERE ([System.State] = 'New' AND ([System.TeamProject] = 'Platform' AND [System.Id] >= 5))",
            &ctx(false),
        )
        .unwrap();
        assert_eq!(q.plan().projects, Some(vec!["platform".into()]));
        assert_eq!(q.plan().id_min, 5);
        // An OR at the top level gives no restriction.
        let q = parse(
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = 'Platform' OR [System.Id] > 3",
            &ctx(false),
        )
        .unwrap();
        assert_eq!(q.plan().projects, None);
    }

    #[test]
    fn parses_python_str_and_iso_datetimes() {
        let (a, t) = parse_datetime("2026-08-13 10:00:00.123456+00:00").unwrap();
        assert!(t);
        let (b, _) = parse_datetime("2026-08-13T10:00:00.123456Z").unwrap();
        assert_eq!(a, b);
        let (c, t) = parse_datetime("2026-08-13").unwrap();
        assert!(!t);
        assert!(c < a);
        assert!(parse_datetime("yesterday").is_none());
    }
}
