//! Ids as Azure DevOps issues them, parsed once where they enter (a delivery, a queued message, a name
//! in an answer), so that only a well-formed id can reach a request path. A delivery is written by
//! whoever holds the webhook credentials, and the processor's requests carry the PAT: an id such as
//! `../../_apis/something?` must never steer one of them elsewhere on the Azure DevOps host.
//!
//! Projects, repositories, teams and pipeline stages are GUIDs ([`Guid`]); work items, builds, pipelines,
//! runs, releases, definitions, deployments and alerts are integers (`u64` in the message). A project
//! GET also takes the project's name ([`ProjectName`]), which is escaped with [`segment`].

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

/// How much of a refused value an error repeats: enough to recognise it, never a whole payload.
const ECHO_CHARS: usize = 64;

/// Why a value is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    #[error("{0:?} is not a GUID")]
    NotAGuid(String),
    #[error("{0:?} is not a project name")]
    NotAProjectName(String),
}

fn echo(s: &str) -> String {
    let mut out: String = s.chars().take(ECHO_CHARS).collect();
    if s.chars().nth(ECHO_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// A GUID in the 8-4-4-4-12 form Azure DevOps issues (either case). It prints lowercase and hyphenated:
/// hex digits and hyphens only, so it goes into a path as it is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Guid(uuid::Uuid);

impl Guid {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        // `Uuid::try_parse` also takes the braced, URN and 32-digit forms; Azure DevOps never sends them,
        // so they are refused rather than rewritten.
        if s.len() != 36 {
            return Err(InvalidId::NotAGuid(echo(s)));
        }
        uuid::Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| InvalidId::NotAGuid(echo(s)))
    }

    /// The all-zero GUID, which Microsoft's samples use for "not set".
    pub fn is_nil(&self) -> bool {
        self.0.is_nil()
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl std::str::FromStr for Guid {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Guid {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Guid> for String {
    fn from(g: Guid) -> Self {
        g.to_string()
    }
}

/// Characters Azure DevOps refuses in a project name (its naming restrictions). They include the ones
/// that would end or split a path segment; anything else is escaped by [`segment`].
const NOT_IN_PROJECT_NAMES: &[char] = &[
    '\\', '/', ':', '*', '?', '"', '\'', '<', '>', ';', '#', '$', '{', '}', ',', '+', '=', '[',
    ']', '|',
];

/// A project name as Azure DevOps allows it (1 to 64 characters, none of its reserved characters, not
/// starting with `_` or `.`, not ending with `.`): the project GET takes a name where the id is unknown
/// (a work item names its project only as `System.TeamProject`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let len = s.chars().count();
        let ok = (1..=64).contains(&len)
            && !s.starts_with(['_', '.'])
            && !s.ends_with('.')
            && s.trim() == s
            && !s
                .chars()
                .any(|c| c.is_control() || NOT_IN_PROJECT_NAMES.contains(&c));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId::NotAProjectName(echo(s)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProjectName({:?})", self.0)
    }
}

/// Everything but RFC 3986's unreserved characters is escaped.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` percent-encoded as one path segment. A segment of dots alone would still be resolved as `.` or
/// `..` by the URL parser (escaped or not): callers pass only parsed ids and names, which never are.
pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "be9b3917-87e6-42a4-a549-2bc06a7a878f";

    #[test]
    fn a_guid_parses_in_either_case_and_prints_lowercase() {
        let g = Guid::parse(&ID.to_uppercase()).unwrap();
        assert_eq!(g.to_string(), ID);
        assert_eq!(g, Guid::parse(ID).unwrap());
        assert!(!g.is_nil());
        assert!(
            Guid::parse("00000000-0000-0000-0000-000000000000")
                .unwrap()
                .is_nil()
        );
    }

    #[test]
    fn anything_but_a_hyphenated_guid_is_refused() {
        for bad in [
            "",
            "p-1",
            "../../_apis/projects?",
            "be9b3917-87e6-42a4-a549-2bc06a7a878f/../x",
            "be9b3917-87e6-42a4-a549-2bc06a7a87%2F",
            "be9b3917-87e6-42a4-a549-2bc06a7a878#",
            " be9b3917-87e6-42a4-a549-2bc06a7a878",
            "be9b391787e642a4a5492bc06a7a878f",
            "{be9b3917-87e6-42a4-a549-2bc06a7a878f}",
            "urn:uuid:be9b3917-87e6-42a4-a549-2bc06a7a878f",
            "be9b3917-87e6-42a4-a549-2bc06a7a878é",
            "be9b3917-87e6-42a4-a549-2bc06a7a878g",
        ] {
            assert!(Guid::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_guid_travels_as_a_json_string_and_a_bad_one_is_a_clear_error() {
        let g = Guid::parse(ID).unwrap();
        assert_eq!(serde_json::to_string(&g).unwrap(), format!("\"{ID}\""));
        assert_eq!(
            serde_json::from_str::<Guid>(&format!("\"{ID}\"")).unwrap(),
            g
        );
        let e = serde_json::from_str::<Guid>("\"../x?\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"../x?\" is not a GUID"), "{e}");
        assert!(serde_json::from_str::<Guid>("5").is_err());
    }

    #[test]
    fn refused_values_are_echoed_only_in_part() {
        let e = Guid::parse(&"x".repeat(10_000)).unwrap_err().to_string();
        assert!(e.len() < 100, "{e}");
    }

    #[test]
    fn project_names_follow_azure_devops_rules() {
        for good in [
            "Fabrikam-Fiber-Git",
            "Mobile App",
            "Données & Co",
            "a.b",
            "100%",
            "x",
        ] {
            assert_eq!(ProjectName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "_private",
            "trailing.",
            " padded",
            "a/b",
            "a\\b",
            "a?b",
            "a#b",
            "line\nbreak",
            &"x".repeat(65),
        ] {
            assert!(ProjectName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_segment_escapes_everything_that_could_leave_it() {
        assert_eq!(segment("Mobile App"), "Mobile%20App");
        assert_eq!(segment("../x?y#z%2F"), "..%2Fx%3Fy%23z%252F");
        assert_eq!(segment("Données"), "Donn%C3%A9es");
        assert_eq!(segment(ID), ID);
    }
}
