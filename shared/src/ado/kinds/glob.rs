//! Path globs for the `file` and `folder` kinds: `**` (any depth), `*` and `?` (within one segment),
//! `[...]` classes, `{a,b}` alternatives, case-insensitive, dot-files included (the peer's wcmatch flags
//! GLOBSTAR | IGNORECASE | DOTGLOB). Compiled to one regex, so matching a large tree is cheap.

use regex::Regex;

/// A compiled path pattern. Paths are compared without their leading `/`.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    pattern: String,
    re: Regex,
}

/// Characters that make a path a pattern rather than a literal path (an escaped one does not count).
const SPECIAL: &[char] = &['*', '?', '[', ']', '{', '}', '!', '@', '+'];

/// Whether `path` holds an unescaped glob character.
pub(crate) fn is_glob(path: &str) -> bool {
    let mut escaped = false;
    for c in path.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if SPECIAL.contains(&c) {
            return true;
        }
    }
    false
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Result<Self, String> {
        let trimmed = pattern.trim().trim_start_matches('/');
        let body = translate(trimmed)?;
        let re = Regex::new(&format!("(?is)^{body}$"))
            .map_err(|e| format!("pattern {pattern:?} is not a valid glob: {e}"))?;
        Ok(Self {
            pattern: pattern.to_owned(),
            re,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.pattern
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        self.re.is_match(path.trim_start_matches('/'))
    }
}

fn translate(p: &str) -> Result<String, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut braces = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if i + 1 < chars.len() => {
                out.push_str(&regex::escape(&chars[i + 1].to_string()));
                i += 2;
                continue;
            }
            '*' if chars.get(i + 1) == Some(&'*') => {
                let at_start = i == 0 || chars[i - 1] == '/';
                let slash_after = chars.get(i + 2) == Some(&'/');
                if at_start && slash_after {
                    // `**/` also matches no directory at all.
                    out.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    out.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                let close = chars[i + 1..]
                    .iter()
                    .skip(1)
                    .position(|&c| c == ']')
                    .map(|k| i + 2 + k)
                    .ok_or_else(|| format!("pattern {p:?} has an unclosed '['"))?;
                let mut class: String = chars[i + 1..close].iter().collect();
                if let Some(rest) = class.strip_prefix('!') {
                    class = format!("^{rest}");
                }
                out.push('[');
                out.push_str(&class.replace('\\', "\\\\").replace('[', "\\["));
                out.push(']');
                i = close + 1;
                continue;
            }
            '{' => {
                braces += 1;
                out.push_str("(?:");
            }
            '}' if braces > 0 => {
                braces -= 1;
                out.push(')');
            }
            ',' if braces > 0 => out.push('|'),
            other => out.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    if braces > 0 {
        return Err(format!("pattern {p:?} has an unclosed '{{'"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        Glob::new(p).unwrap().matches(path)
    }

    #[test]
    fn stars_stay_in_one_segment_and_globstar_crosses_them() {
        assert!(m("*.json", "package.json"));
        assert!(!m("*.json", "config/settings.json"));
        assert!(
            m("**/*.json", "package.json"),
            "**/ matches zero directories"
        );
        assert!(m("**/*.json", "/config/deep/settings.json"));
        assert!(m("services/*/port.yml", "services/api/port.yml"));
        assert!(!m("services/*/port.yml", "services/api/v2/port.yml"));
        assert!(m("services/**", "services/api/v2/port.yml"));
    }

    #[test]
    fn classes_braces_case_and_dots() {
        assert!(m("config/*.{yaml,yml}", "config/app.YAML"));
        assert!(!m("config/*.{yaml,yml}", "config/app.json"));
        assert!(m("file[0-9].txt", "file7.txt"));
        assert!(!m("file[!0-9].txt", "file7.txt"));
        assert!(m("*", ".gitignore"), "dot-files are not hidden");
        assert!(m("README.md", "readme.md"));
        assert!(m("a?c", "abc") && !m("a?c", "a/c"));
    }

    #[test]
    fn literal_paths_and_bad_patterns_are_recognised() {
        assert!(!is_glob("config/app.yaml"));
        assert!(is_glob("config/*.yaml"));
        assert!(!is_glob(r"weird\*name"));
        assert!(Glob::new("config/[a").is_err());
        assert!(Glob::new("{a,b").is_err());
    }
}
