//! `ado-sync tenants add|list|show|remove|rotate-webhook-secret`: the hosted service's tenant registry,
//! in DynamoDB (`TENANTS_TABLE`, AWS credentials from the default chain) or a SQLite file
//! (`--tenants-db FILE`). Records hold references to secrets, never values; a generated webhook secret
//! is printed once and stored only as a salted hash.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use shared::aws::AwsIdentity;
use shared::config::DEFAULT_WEBHOOK_USERNAME;
use shared::tenants::dynamo::DynamoRegistry;
use shared::tenants::sqlite::SqliteRegistry;
use shared::tenants::{
    CatalogAccount, OrgAuth, Organization, RegistryError, SecretRef, StoredSecret, TenantId,
    TenantOptions, TenantRecord, TenantRegistry, WebhookCredential,
};

#[derive(Args)]
pub(crate) struct TenantsArgs {
    /// The registry as a SQLite file (self-hosted); else the DynamoDB table TENANTS_TABLE.
    #[arg(long, global = true)]
    tenants_db: Option<PathBuf>,
    #[command(subcommand)]
    command: TenantsCommand,
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Register a tenant: its catalog account, its organisations and their sign-in, its webhook
    /// credential. Prints the tenant's webhook URL (and a generated secret, once).
    Add(Box<AddArgs>),
    /// Every tenant, one line each (or JSON).
    List {
        #[arg(long)]
        json: bool,
    },
    /// One tenant's record as JSON (references only: it holds no secret).
    Show { id: String },
    /// Remove a tenant: its webhook URL answers 404 and its schedule stops from then on.
    Remove { id: String },
    /// Replace a tenant's generated webhook secret; the new one is printed once. Update the
    /// organisation's service hooks with it (`subscriptions sync`).
    RotateWebhookSecret { id: String },
}

#[derive(Args)]
struct AddArgs {
    /// 1 to 40 lowercase letters, digits and '-': part of the webhook URL.
    #[arg(long)]
    id: String,
    #[arg(long)]
    name: Option<String>,
    /// The catalog API: `eu`, `us` or a URL.
    #[arg(long, default_value = "eu")]
    catalog_url: String,
    /// Reference to the catalog client id: a Secrets Manager ARN, an SSM parameter (/name) or env:VAR.
    #[arg(long)]
    catalog_client_id: String,
    /// Reference to the catalog client secret (as --catalog-client-id).
    #[arg(long)]
    catalog_client_secret: String,
    /// An Azure DevOps organisation URL; repeat for several (they share the sign-in below).
    #[arg(long = "org", required = true)]
    orgs: Vec<String>,
    /// Reference to a PAT ("Single Account").
    #[arg(long, conflicts_with_all = ["sp_client_id", "sp_tenant_id", "sp_client_secret"])]
    pat: Option<String>,
    /// An Entra ID service principal's client id ("Multiple Accounts"), with --sp-tenant-id and
    /// --sp-client-secret.
    #[arg(long, requires_all = ["sp_tenant_id", "sp_client_secret"])]
    sp_client_id: Option<String>,
    #[arg(long)]
    sp_tenant_id: Option<String>,
    /// Reference to the principal's client secret.
    #[arg(long)]
    sp_client_secret: Option<String>,
    /// The Entra ID authority (sovereign clouds).
    #[arg(long)]
    sp_authority: Option<String>,
    /// The Basic username the tenant's service hooks send.
    #[arg(long, default_value = DEFAULT_WEBHOOK_USERNAME)]
    webhook_username: String,
    /// Generate the webhook secret: printed once, stored only as a salted hash.
    #[arg(long, conflicts_with = "webhook_secret")]
    generate_webhook_secret: bool,
    /// Reference to a webhook secret kept elsewhere, instead of generating one.
    #[arg(long)]
    webhook_secret: Option<String>,
    /// The deployment's public base URL, to print the whole webhook URL.
    #[arg(long)]
    public_url: Option<String>,
    /// A port-app-config file for this tenant (else the catalog's integration record, else the default).
    #[arg(long)]
    mapping_file: Option<PathBuf>,
    /// Projects with any of these tags are skipped (comma list).
    #[arg(long, value_delimiter = ',')]
    excluded_tags: Vec<String>,
    /// Seconds between this tenant's full resyncs.
    #[arg(long)]
    resync_interval_secs: Option<u64>,
}

pub(crate) async fn run(args: TenantsArgs) -> ExitCode {
    let registry: Box<dyn TenantRegistry> = match open(args.tenants_db).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let done = match args.command {
        TenantsCommand::Add(add) => add_tenant(registry.as_ref(), *add).await,
        TenantsCommand::List { json } => list(registry.as_ref(), json).await,
        TenantsCommand::Show { id } => show(registry.as_ref(), &id).await,
        TenantsCommand::Remove { id } => remove(registry.as_ref(), &id).await,
        TenantsCommand::RotateWebhookSecret { id } => rotate(registry.as_ref(), &id).await,
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed::Usage(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(Failed::Registry(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Failed {
    /// The command's input is wrong.
    Usage(String),
    Registry(RegistryError),
}

impl From<RegistryError> for Failed {
    fn from(e: RegistryError) -> Self {
        Failed::Registry(e)
    }
}

async fn open(db: Option<PathBuf>) -> Result<Box<dyn TenantRegistry>, String> {
    if let Some(path) = db {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("--tenants-db: cannot create {}: {e}", dir.display()))?;
        }
        return SqliteRegistry::open(&path)
            .map(|r| Box::new(r) as Box<dyn TenantRegistry>)
            .map_err(|e| e.to_string());
    }
    let table = std::env::var("TENANTS_TABLE")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or("name the registry: --tenants-db FILE, or TENANTS_TABLE (a DynamoDB table)")?;
    let aws = AwsIdentity::DEFAULT_CHAIN
        .resolve()
        .await
        .map_err(|e| format!("AWS credentials for TENANTS_TABLE: {e}"))?;
    Ok(Box::new(DynamoRegistry::new(aws, table.trim().to_owned())))
}

fn id(raw: &str) -> Result<TenantId, Failed> {
    TenantId::parse(raw).map_err(|e| Failed::Usage(e.to_string()))
}

fn reference(flag: &str, raw: &str) -> Result<SecretRef, Failed> {
    SecretRef::parse(raw).map_err(|e| Failed::Usage(format!("{flag}: {e}")))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn record_of(add: AddArgs) -> Result<(TenantRecord, Option<String>, Option<String>), Failed> {
    let auth = match (&add.pat, &add.sp_client_id) {
        (Some(pat), None) => OrgAuth::Pat {
            pat: reference("--pat", pat)?,
        },
        (None, Some(client_id)) => OrgAuth::ServicePrincipal {
            tenant_id: add.sp_tenant_id.clone().unwrap_or_default(),
            client_id: client_id.clone(),
            client_secret: reference(
                "--sp-client-secret",
                add.sp_client_secret.as_deref().unwrap_or_default(),
            )?,
            authority: add.sp_authority.clone(),
        },
        _ => {
            return Err(Failed::Usage(
                "sign in with --pat REF, or a service principal (--sp-client-id, --sp-tenant-id, --sp-client-secret REF)".into(),
            ));
        }
    };
    let (shown, secret) = match (&add.webhook_secret, add.generate_webhook_secret) {
        (Some(r), false) => (
            None,
            StoredSecret::Ref {
                at: reference("--webhook-secret", r)?,
            },
        ),
        (None, true) => {
            let (secret, stored) = StoredSecret::generate();
            (Some(secret), stored)
        }
        _ => {
            return Err(Failed::Usage(
                "give the webhook a secret: --generate-webhook-secret, or --webhook-secret REF"
                    .into(),
            ));
        }
    };
    let mapping = add
        .mapping_file
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(|e| Failed::Usage(format!("--mapping-file {}: {e}", p.display())))
        })
        .transpose()?;
    let at = now();
    let record = TenantRecord {
        id: id(&add.id)?,
        name: add.name,
        catalog: CatalogAccount {
            base_url: add.catalog_url,
            client_id: reference("--catalog-client-id", &add.catalog_client_id)?,
            client_secret: reference("--catalog-client-secret", &add.catalog_client_secret)?,
        },
        organizations: add
            .orgs
            .iter()
            .map(|url| Organization {
                url: url.trim().to_owned(),
                auth: auth.clone(),
            })
            .collect(),
        webhook: WebhookCredential {
            username: add.webhook_username,
            secret,
        },
        options: TenantOptions {
            mapping,
            resync_interval_secs: add.resync_interval_secs,
            excluded_tags: add.excluded_tags,
            max_concurrency: None,
        },
        created_at: at.clone(),
        updated_at: at,
    };
    record
        .validate()
        .map_err(|e| Failed::Usage(e.to_string()))?;
    Ok((record, shown, add.public_url))
}

fn webhook_url(record: &TenantRecord, public: Option<&str>) -> String {
    match public {
        Some(base) => format!("{}{}", base.trim_end_matches('/'), record.webhook_path()),
        None => format!("<public URL>{}", record.webhook_path()),
    }
}

async fn add_tenant(registry: &dyn TenantRegistry, add: AddArgs) -> Result<(), Failed> {
    let (record, secret, public) = record_of(add)?;
    registry.add(&record).await?;
    println!("tenant {} added", record.id);
    println!(
        "webhook URL:      {}",
        webhook_url(&record, public.as_deref())
    );
    println!("webhook username: {}", record.webhook.username);
    if let Some(secret) = secret {
        println!("webhook secret:   {secret}");
        println!("(shown this once; only its salted hash is stored)");
    }
    Ok(())
}

async fn list(registry: &dyn TenantRegistry, json: bool) -> Result<(), Failed> {
    let all = registry.list().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return Ok(());
    }
    if all.is_empty() {
        println!("no tenants");
    }
    for t in &all {
        let orgs: Vec<&str> = t.organizations.iter().map(|o| o.url.as_str()).collect();
        println!(
            "{:<20} {:<24} {} organisation(s): {}",
            t.id.as_str(),
            t.name.as_deref().unwrap_or("-"),
            orgs.len(),
            orgs.join(", ")
        );
    }
    Ok(())
}

async fn show(registry: &dyn TenantRegistry, raw: &str) -> Result<(), Failed> {
    let id = id(raw)?;
    let record = registry
        .get(&id)
        .await?
        .ok_or(RegistryError::NotFound(id))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&record).unwrap_or_default()
    );
    Ok(())
}

async fn remove(registry: &dyn TenantRegistry, raw: &str) -> Result<(), Failed> {
    let id = id(raw)?;
    if !registry.remove(&id).await? {
        return Err(RegistryError::NotFound(id).into());
    }
    println!("tenant {id} removed");
    Ok(())
}

async fn rotate(registry: &dyn TenantRegistry, raw: &str) -> Result<(), Failed> {
    let id = id(raw)?;
    let mut record = registry
        .get(&id)
        .await?
        .ok_or_else(|| RegistryError::NotFound(id.clone()))?;
    if let StoredSecret::Ref { at } = &record.webhook.secret {
        return Err(Failed::Usage(format!(
            "tenant {id}'s webhook secret is kept at {}: rotate it there",
            at.as_str()
        )));
    }
    let (secret, stored) = StoredSecret::generate();
    record.webhook.secret = stored;
    record.updated_at = now();
    registry.replace(&record).await?;
    println!("tenant {id}: new webhook secret (shown this once): {secret}");
    Ok(())
}
