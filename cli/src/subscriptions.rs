//! `ado-sync subscriptions sync`: brings the organisation's service-hook subscriptions for our webhook in
//! line with the settings (create, replace, remove ours; never anyone else's).

use std::process::ExitCode;

use shared::ado::AdoClient;
use shared::ado::hooks::{self, SubscriptionSettings};
use shared::ado::kinds::FetchContext;
use shared::aws::AwsIdentity;
use shared::config::{ConfigError, Env, Settings};

pub(crate) async fn sync(dry_run: bool, json: bool) -> ExitCode {
    let settings = Env::load_and(AwsIdentity::DEFAULT_CHAIN, |env| {
        ConfigError::both(Settings::from_env(env), SubscriptionSettings::from_env(env))
    })
    .await;
    let (settings, hook_settings) = match settings {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match AdoClient::from_settings(&settings.ado) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let ctx = FetchContext::new(client, settings.excluded_tags.clone());
    let report = if dry_run {
        hooks::preview_subscriptions(&ctx, &hook_settings).await
    } else {
        hooks::sync_subscriptions(&ctx, &hook_settings).await
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.render());
    }
    if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
