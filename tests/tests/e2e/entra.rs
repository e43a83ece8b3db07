//! Azure DevOps as a Microsoft Entra ID service principal: a whole pass through the resync function's
//! handler signs in once with the client-credentials flow against the simulator's token endpoint, and
//! a token that stops working mid-way is replaced, not fatal; a refused secret fails the pass with
//! Entra ID's own code and never the secret.

use sim::ado::{AdoSimOptions, EntraApp};

use crate::helpers::{Setup, TestOrg, runtime_for};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const PROJECTS: &str = "resources:\n  - kind: project\n    selector: {query: 'true'}\n    port:\n      entity:\n        mappings:\n          identifier: .id\n          title: .name\n          blueprint: '\"azureDevopsProject\"'\n";

fn app() -> EntraApp {
    EntraApp {
        tenant_id: TENANT.into(),
        client_id: "ado-sync-app".into(),
        client_secret: "the-right-secret".into(),
    }
}

/// The organisation, with the runtime signing in as the principal (no PAT) with `secret`.
async fn signed_in_with(secret: &str) -> TestOrg {
    let mut org = Setup {
        ado: AdoSimOptions {
            entra: Some(app()),
            // Basic PATs are refused: only the principal's tokens get in.
            pat: Some("no-pat-works".into()),
            ..AdoSimOptions::default()
        },
        mapping: PROJECTS,
        ..Setup::default()
    }
    .start()
    .await;
    let settings = [
        ("ADO_PAT", String::new()),
        ("ADO_CLIENT_ID", "ado-sync-app".into()),
        ("ADO_CLIENT_SECRET", secret.to_owned()),
        ("ADO_TENANT_ID", TENANT.into()),
        ("ADO_AUTHORITY_URL", org.sim.entra_authority()),
    ];
    org.runtime = runtime_for(&org.sim, PROJECTS, &settings);
    org
}

#[tokio::test]
async fn a_pass_signs_in_once_as_the_service_principal_and_survives_a_revoked_token() {
    let org = signed_in_with("the-right-secret").await;
    org.resync().await.expect("the pass succeeds");
    assert_eq!(
        org.sim.ado.entra_tokens_issued(),
        1,
        "one token for the pass"
    );
    assert_eq!(
        org.catalog_ids("azureDevopsProject").len(),
        org.sim.ado.project_ids().len()
    );

    org.sim.ado.expire_entra_tokens();
    org.resync().await.expect("a refused token is replaced");
    assert_eq!(org.sim.ado.entra_tokens_issued(), 2);
}

#[tokio::test]
async fn a_refused_secret_fails_the_pass_with_entra_s_code_and_never_the_secret() {
    let org = signed_in_with("a-wrong-secret-value").await;
    let failed = org.resync().await.expect_err("the pass fails");
    let text = format!("{failed:?} {}", serde_json::to_string(&failed.0).unwrap());
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(!text.contains("a-wrong-secret-value"), "{text}");
    assert!(org.catalog_ids("azureDevopsProject").is_empty());
}
