//! Which product the simulator plays: Azure DevOps Services (the default) or Azure DevOps Server, which
//! has no Graph, no Member Entitlement Management and no Advanced Security. Also `connectionData`, the
//! one call that tells the two apart.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AdoSim;
use super::org::guid;
use super::people::person;

const TAG_DEPLOYMENT: u64 = 0x5e;

/// The product the simulator answers as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavour {
    /// Azure DevOps Services (`deploymentType: hosted`): every API.
    #[default]
    Services,
    /// Azure DevOps Server (`deploymentType: onPremises`): the Graph (`/_apis/graph/…`),
    /// entitlements (`/_apis/userentitlements`) and Advanced Security (`/{project}/_apis/alert/…`)
    /// routes do not exist.
    Server,
}

/// Whether an API path (after `/{org}`) belongs to a service Azure DevOps Server does not have.
fn server_lacks(path: &str) -> bool {
    let path = path.to_ascii_lowercase();
    path == "/_apis/graph"
        || path.starts_with("/_apis/graph/")
        || path == "/_apis/userentitlements"
        || path.starts_with("/_apis/userentitlements/")
        || path.contains("/_apis/alert/")
}

/// In front of the org routes (behind the request gate): on the Server flavour, the services Server
/// lacks answer as an unknown route does there. The exact body of a real Server's answer could not be
/// found; this is the answer ASP.NET gives for a path no controller serves, in Azure DevOps' JSON error
/// shape (`$id`, `innerException`, `message`, `typeName`, `typeKey`, `errorCode`, `eventId`).
pub(crate) async fn flavour(State(sim): State<Arc<AdoSim>>, req: Request, next: Next) -> Response {
    if sim.opts.flavour == Flavour::Server {
        let path = req.uri().path();
        let rest = path
            .strip_prefix(&format!("/{}", sim.org.name))
            .unwrap_or(path);
        if server_lacks(rest) {
            let body = json!({
                "$id": "1",
                "innerException": null,
                "message": format!("The controller for path '{path}' was not found or does not implement IController."),
                "typeName": "System.Web.HttpException, System.Web",
                "typeKey": "HttpException",
                "errorCode": 0,
                "eventId": 0,
            });
            return (StatusCode::NOT_FOUND, Json(body)).into_response();
        }
    }
    next.run(req).await
}

/// `GET /{org}/_apis/connectionData`: who is calling and what kind of deployment answers.
pub(crate) async fn connection_data(State(sim): State<Arc<AdoSim>>) -> Json<Value> {
    let me = person(&sim.org, 0);
    let identity = json!({
        "id": me.id,
        "descriptor": format!("Microsoft.IdentityModel.Claims.ClaimsIdentity;{}", me.unique_name),
        "subjectDescriptor": me.descriptor,
        "providerDisplayName": me.display_name,
        "isActive": true,
        "properties": {"Account": {"$type": "System.String", "$value": me.unique_name}},
        "resourceVersion": 2,
        "metaTypeId": 0,
    });
    let (deployment_type, host) = match sim.opts.flavour {
        Flavour::Services => ("hosted", 1),
        Flavour::Server => ("onPremises", 2),
    };
    Json(json!({
        "authenticatedUser": identity,
        "authorizedUser": identity,
        "instanceId": guid(sim.org.seed, TAG_DEPLOYMENT, host, 0),
        "deploymentId": guid(sim.org.seed, TAG_DEPLOYMENT, host, 1),
        "deploymentType": deployment_type,
        "locationServiceData": {
            "serviceOwner": "00025394-6065-48ca-87d9-7f5672854ef7",
            "defaultAccessMappingMoniker": "PublicAccessMapping",
            "lastChangeId": 1,
            "lastChangeId64": 1,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_graph_entitlements_and_alerts_are_missing_on_server() {
        assert!(server_lacks("/_apis/graph/users"));
        assert!(server_lacks("/_apis/Graph/Groups"));
        assert!(server_lacks("/_apis/userentitlements"));
        assert!(server_lacks("/p1/_apis/alert/repositories/r/alerts"));
        assert!(!server_lacks("/_apis/projects"));
        assert!(!server_lacks("/p1/_apis/git/repositories/r/refs"));
        assert!(!server_lacks("/_apis/graphql"));
    }
}
