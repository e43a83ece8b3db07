//! Local servers for tests, the demo and benchmarks: an Azure DevOps organisation ([`ado`]) and a catalog
//! ([`catalog`]), served together on one port: ADO at `/{org}`, the catalog at `/catalog`, controls at `/_sim`
//! (the catalog's at `/_sim/catalog`), and Microsoft Entra's token endpoint at `/{tenantId}/oauth2/v2.0/token`.

pub mod ado;
pub mod catalog;
pub mod lambda;
pub mod moto;

use std::net::SocketAddr;
use std::sync::Arc;

use ado::{AdoSim, AdoSimOptions, OrgSpec};
use catalog::{CatalogSim, CatalogSimOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running simulator.
pub struct RunningSim {
    pub addr: SocketAddr,
    pub ado: Arc<AdoSim>,
    pub catalog: Arc<CatalogSim>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningSim {
    /// The organisation URL to give `ADO_ORG_URL` (the Azure DevOps Server form: host + collection).
    pub fn ado_org_url(&self) -> String {
        format!("http://{}/{}", self.addr, self.ado.org_name())
    }

    /// The Microsoft Entra authority (the token endpoint is `{authority}/{tenantId}/oauth2/v2.0/token`).
    pub fn entra_authority(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The catalog base URL to give `CATALOG_BASE_URL`.
    pub fn catalog_base_url(&self) -> String {
        format!("http://{}/catalog", self.addr)
    }

    /// The settings a resync or processor needs to use this simulator (any credentials work).
    pub fn settings_env(&self) -> [(&'static str, String); 5] {
        [
            ("ADO_ORG_URL", self.ado_org_url()),
            ("ADO_PAT", "pat".into()),
            ("CATALOG_BASE_URL", self.catalog_base_url()),
            ("CATALOG_CLIENT_ID", "id".into()),
            ("CATALOG_CLIENT_SECRET", "secret".into()),
        ]
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves until the process is stopped.
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Starts both servers on `listen` (port 0 picks a free port).
pub async fn start(
    listen: SocketAddr,
    spec: OrgSpec,
    ado_opts: AdoSimOptions,
    catalog_opts: CatalogSimOptions,
) -> anyhow::Result<RunningSim> {
    let ado = AdoSim::new(spec, ado_opts);
    let catalog = CatalogSim::new(catalog_opts)?;
    let app = axum::Router::new()
        .merge(ado.control_router())
        .merge(catalog.control_router())
        .nest("/catalog", catalog.router())
        .merge(ado.router());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    // Event deliveries carry links back into the org; they are made without a request to take a host from.
    ado.set_public_base_url(&format!("http://{addr}/{}", ado.org_name()));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "simulator server stopped");
        }
    });
    Ok(RunningSim {
        addr,
        ado,
        catalog,
        shutdown: Some(tx),
        task: Some(task),
    })
}
