//! Path globs for the `file` and `folder` kinds: `**` (any depth), `*` and `?` (within one segment),
//! `[...]` classes, `{a,b}` alternatives, case-insensitive, dot-files included (the peer's wcmatch flags
//! GLOBSTAR | IGNORECASE | DOTGLOB). Compiled once by `globset`, so matching a large tree is cheap.

use globset::{GlobBuilder, GlobMatcher};

/// A compiled path pattern. Paths are compared without their leading `/`.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    pattern: String,
    matcher: GlobMatcher,
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
        // The wcmatch flags, in globset's terms: `*` and `?` stop at `/` (globset lets them cross it
        // by default), letters match either case, `\` escapes the next character, and `{,x}` may
        // match nothing. globset never hides dot-files, and an unclosed `[` or `{` is an error.
        // `**` is special only as a whole segment, as in wcmatch; elsewhere it is a `*`.
        let glob = GlobBuilder::new(trimmed)
            .literal_separator(true)
            .case_insensitive(true)
            .backslash_escape(true)
            .empty_alternates(true)
            .build()
            .map_err(|e| format!("pattern {pattern:?} is not a valid glob: {}", e.kind()))?;
        Ok(Self {
            pattern: pattern.to_owned(),
            matcher: glob.compile_matcher(),
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.pattern
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        self.matcher.is_match(path.trim_start_matches('/'))
    }
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
        assert!(m("services/**/port.yml", "services/port.yml"));
        assert!(m("services/**/port.yml", "services/api/v2/port.yml"));
        assert!(
            !m("services**.yml", "services/api/port.yml"),
            "** inside a segment is a *"
        );
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
        assert!(m("app{,.prod}.yml", "app.yml") && m("app{,.prod}.yml", "app.prod.yml"));
        assert!(m(r"weird\*name", "weird*name") && !m(r"weird\*name", "weirdXname"));
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
