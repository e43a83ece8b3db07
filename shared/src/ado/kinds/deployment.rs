//! Which product serves the organisation: Azure DevOps Services or Azure DevOps Server. It decides the
//! default mapping (Server has no Graph, entitlements or Advanced Security, so the kinds built on them
//! are left out of it) and, once per pass, whether a 404 from those APIs means "not available here".

use serde_json::Value;

use super::FetchContext;
use crate::ado::{AdoClient, AdoError, ApiVersion, Request};

/// The product behind an organisation URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    Services,
    Server,
}

impl Deployment {
    /// A cloud URL (`dev.azure.com`, `*.visualstudio.com`) is Services, without a request. A
    /// Server-form URL (`host/[tfs/]collection`, also what the simulator serves) is asked once:
    /// `connectionData` says `deploymentType: onPremises` on Server and `hosted` on Services. Refused
    /// credentials are returned (nothing else will work either); any other failure makes a
    /// Server-form URL Server, and says why.
    pub async fn detect(client: &AdoClient) -> Result<Self, AdoError> {
        if client.org_url().is_cloud() {
            return Ok(Self::Services);
        }
        let req = Request::get("/_apis/connectionData").version(ApiVersion::Preview(1));
        match client.send(&req).await {
            Ok(reply) => Ok(Self::from_connection_data(&reply.body)),
            Err(e @ AdoError::Unauthorized(_)) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "connectionData could not be read; a server URL is taken for Azure DevOps Server");
                Ok(Self::Server)
            }
        }
    }

    fn from_connection_data(body: &Value) -> Self {
        match body.get("deploymentType").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case("hosted") => Self::Services,
            Some(t) if t.eq_ignore_ascii_case("onPremises") => Self::Server,
            other => {
                tracing::warn!(deployment_type = ?other, "connectionData names no known deploymentType; a server URL is taken for Azure DevOps Server");
                Self::Server
            }
        }
    }
}

impl FetchContext {
    /// Whether the organisation is served by Azure DevOps Server, asked at most once per pass and only
    /// when a kind needs to know (see [`Deployment::detect`]). When it cannot be told, not Server: a 404
    /// then stays an error, which keeps the blueprint's entities.
    pub(crate) async fn on_server(&self) -> bool {
        matches!(
            self.deployment
                .get_or_fetch(|| Deployment::detect(&self.client))
                .await
                .as_deref(),
            Ok(Deployment::Server)
        )
    }

    /// The Graph and Member Entitlement Management APIs exist only on Azure DevOps Services; Azure DevOps
    /// Server answers 404 for their whole area, so there a 404 on one of their organisation-wide
    /// collections means the kind is [`AdoError::NotAvailable`], with a reason, and the rest of the pass
    /// carries on. On Services these APIs always exist: a 404 there is an error like any other.
    pub(crate) async fn services_only<T>(
        &self,
        result: Result<T, AdoError>,
        kind: &str,
        api: &str,
    ) -> Result<T, AdoError> {
        match result {
            Err(AdoError::NotFound(detail)) if self.on_server().await => {
                Err(AdoError::not_available(format!(
                    "{kind}: this server does not serve the {api} API (it exists only on Azure DevOps \
                     Services, not on Azure DevOps Server); remove the {kind} kind from the mapping for \
                     this organisation ({detail})"
                )))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_cloud_url_is_azure_devops_services_without_a_request() {
        let cfg = crate::ado::AdoClientConfig::new(
            crate::ado::OrgUrl::parse("https://dev.azure.com/contoso").unwrap(),
            secrecy::SecretString::from("pat".to_owned()),
        );
        let client = AdoClient::new(cfg).unwrap();
        assert_eq!(
            Deployment::detect(&client).await.unwrap(),
            Deployment::Services
        );
        assert_eq!(client.requests_made(), 0);
    }

    #[test]
    fn the_deployment_type_names_the_product() {
        let of = |t: Value| Deployment::from_connection_data(&json!({"deploymentType": t}));
        assert_eq!(of(json!("hosted")), Deployment::Services);
        assert_eq!(of(json!("onPremises")), Deployment::Server);
        assert_eq!(of(json!(null)), Deployment::Server);
    }
}
