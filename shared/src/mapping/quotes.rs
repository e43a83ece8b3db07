//! Single-quote rewriting applied to every jq pattern before compiling, as Port's Ocean does.
//!
//! Users write `'text'` in mappings because YAML makes double quotes awkward; Ocean turns delimiter-like
//! `'` into `"` with a regex rather than a parser. Existing mappings depend on its exact quirks (for
//! example `'a'+'b'` becomes `"a'+'b"`), so this reproduces that rule, not a smarter one.

/// Replaces a `'` by `"` when it sits at the start or after whitespace and is not followed by
/// whitespace or `"`, or when it sits at the end or before whitespace and is not preceded by
/// whitespace or `"`. Both conditions look at the original text, as a single regex substitution does.
pub fn rewrite_single_quotes(pattern: &str) -> String {
    if !pattern.contains('\'') {
        return pattern.to_owned();
    }
    let chars: Vec<char> = pattern.chars().collect();
    let blank_or_quote = |c: Option<&char>| c.is_some_and(|c| c.is_whitespace() || *c == '"');
    let mut out = String::with_capacity(pattern.len());
    for (i, &c) in chars.iter().enumerate() {
        if c != '\'' {
            out.push(c);
            continue;
        }
        let prev = i.checked_sub(1).and_then(|p| chars.get(p));
        let next = chars.get(i + 1);
        let opens = prev.is_none_or(|p| p.is_whitespace()) && !blank_or_quote(next);
        let closes = next.is_none_or(|n| n.is_whitespace()) && !blank_or_quote(prev);
        out.push(if opens || closes { '"' } else { '\'' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::rewrite_single_quotes;

    #[test]
    fn single_quotes_are_rewritten_exactly_like_the_peer() {
        let table = [
            ("'a'+'b'", "\"a'+'b\""),
            ("'it''s'", "\"it''s\""),
            (".x // ''", ".x // \"\""),
            (".name != 'test-item'", ".name != \"test-item\""),
            ("'hello'", "\"hello\""),
            ("'\"quoted\"'", "'\"quoted\"'"),
            (".a + ' ' + .b", ".a + ' ' + .b"),
            ("don't", "don't"),
            (".x", ".x"),
            ("'", "\""),
            ("[ 'a', 'b' ]", "[ \"a', \"b\" ]"),
        ];
        for (input, expected) in table {
            assert_eq!(rewrite_single_quotes(input), expected, "input: {input}");
        }
    }
}
