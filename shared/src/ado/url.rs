//! Organisation URLs: the three forms users paste, and the service sub-hosts derived from them.

use url::Url;

use super::AdoError;

/// The ADO services that live on their own host in the cloud (releases, identities, entitlements,
/// advanced security). On Azure DevOps Server every service is on the collection URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Core,
    Release,
    Identity,
    Entitlement,
    AdvancedSecurity,
}

impl Service {
    fn subdomain(self) -> Option<&'static str> {
        match self {
            Service::Core => None,
            Service::Release => Some("vsrm"),
            Service::Identity => Some("vssps"),
            Service::Entitlement => Some("vsaex"),
            Service::AdvancedSecurity => Some("advsec"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Form {
    /// `https://dev.azure.com/{org}`
    DevAzure { org: String },
    /// `https://{org}.visualstudio.com`
    VisualStudio { org: String },
    /// `https://host[:port]/[tfs/]{collection}` — Azure DevOps Server, or the simulator.
    Server,
}

/// A parsed organisation (or collection) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgUrl {
    base: Url,
    form: Form,
}

impl OrgUrl {
    pub fn parse(raw: &str) -> Result<Self, AdoError> {
        let trimmed = raw.trim().trim_end_matches('/');
        let base = Url::parse(trimmed).map_err(|e| {
            AdoError::invalid(format!("organisation URL {trimmed:?} is not a URL: {e}"))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(AdoError::invalid(format!(
                "organisation URL {trimmed:?} must start with https:// (or http:// for a local server)"
            )));
        }
        let host = base
            .host_str()
            .ok_or_else(|| AdoError::invalid(format!("organisation URL {trimmed:?} has no host")))?
            .to_ascii_lowercase();
        let segments: Vec<&str> = base
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).collect())
            .unwrap_or_default();
        let form = if host == "dev.azure.com" {
            let org = segments.first().ok_or_else(|| {
                AdoError::invalid(format!("organisation URL {trimmed:?} lacks the organisation: https://dev.azure.com/{{org}}"))
            })?;
            Form::DevAzure {
                org: (*org).to_owned(),
            }
        } else if let Some(org) = host.strip_suffix(".visualstudio.com") {
            Form::VisualStudio {
                org: org.to_owned(),
            }
        } else {
            if segments.is_empty() {
                return Err(AdoError::invalid(format!(
                    "organisation URL {trimmed:?} lacks the collection: https://host[:port]/[tfs/]{{collection}}"
                )));
            }
            Form::Server
        };
        Ok(Self { base, form })
    }

    /// True for Azure DevOps Services (either cloud form).
    pub fn is_cloud(&self) -> bool {
        !matches!(self.form, Form::Server)
    }

    /// The organisation or collection name (last path segment on Server).
    pub fn org_name(&self) -> &str {
        match &self.form {
            Form::DevAzure { org } | Form::VisualStudio { org } => org,
            Form::Server => self
                .base
                .path_segments()
                .and_then(|mut s| s.next_back())
                .unwrap_or(""),
        }
    }

    /// The base URL (no trailing slash) for a service.
    pub fn service_base(&self, service: Service) -> String {
        let Some(sub) = service.subdomain() else {
            return self.base.as_str().trim_end_matches('/').to_owned();
        };
        match &self.form {
            Form::DevAzure { org } => format!("https://{sub}.dev.azure.com/{org}"),
            Form::VisualStudio { org } => format!("https://{org}.{sub}.visualstudio.com"),
            Form::Server => self.base.as_str().trim_end_matches('/').to_owned(),
        }
    }
}

impl std::fmt::Display for OrgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.base.as_str().trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_azure_urls_derive_service_hosts() {
        let u = OrgUrl::parse("https://dev.azure.com/contoso/").unwrap();
        assert!(u.is_cloud());
        assert_eq!(u.org_name(), "contoso");
        assert_eq!(
            u.service_base(Service::Core),
            "https://dev.azure.com/contoso"
        );
        assert_eq!(
            u.service_base(Service::Release),
            "https://vsrm.dev.azure.com/contoso"
        );
        assert_eq!(
            u.service_base(Service::Identity),
            "https://vssps.dev.azure.com/contoso"
        );
        assert_eq!(
            u.service_base(Service::Entitlement),
            "https://vsaex.dev.azure.com/contoso"
        );
        assert_eq!(
            u.service_base(Service::AdvancedSecurity),
            "https://advsec.dev.azure.com/contoso"
        );
    }

    #[test]
    fn visualstudio_urls_put_the_service_after_the_org() {
        let u = OrgUrl::parse("https://Contoso.visualstudio.com").unwrap();
        assert!(u.is_cloud());
        assert_eq!(u.org_name(), "contoso");
        assert_eq!(
            u.service_base(Service::Release),
            "https://contoso.vsrm.visualstudio.com"
        );
        assert_eq!(
            u.service_base(Service::Entitlement),
            "https://contoso.vsaex.visualstudio.com"
        );
    }

    #[test]
    fn server_urls_keep_every_service_on_the_collection() {
        let u = OrgUrl::parse("https://tfs.example.com:8080/tfs/DefaultCollection").unwrap();
        assert!(!u.is_cloud());
        assert_eq!(u.org_name(), "DefaultCollection");
        for s in [
            Service::Core,
            Service::Release,
            Service::Identity,
            Service::Entitlement,
        ] {
            assert_eq!(
                u.service_base(s),
                "https://tfs.example.com:8080/tfs/DefaultCollection"
            );
        }
        let local = OrgUrl::parse("http://127.0.0.1:4000/simorg").unwrap();
        assert_eq!(
            local.service_base(Service::Release),
            "http://127.0.0.1:4000/simorg"
        );
    }

    #[test]
    fn urls_without_org_or_scheme_are_rejected_with_the_expected_form() {
        let e = OrgUrl::parse("https://dev.azure.com/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dev.azure.com/{org}"), "{e}");
        assert!(OrgUrl::parse("ftp://x/y").is_err());
        assert!(OrgUrl::parse("https://tfs.example.com").is_err());
        assert!(OrgUrl::parse("not a url").is_err());
    }
}
