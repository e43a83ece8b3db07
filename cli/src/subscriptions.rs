//! `ado-sync subscriptions sync`: brings the organisation's service-hook subscriptions for our webhook in
//! line with the settings (create, replace, remove ours; never anyone else's).

use std::process::ExitCode;

use shared::ado::AdoClient;
use shared::ado::hooks::{self, SubscriptionSettings};
use shared::ado::kinds::FetchContext;
use shared::config::Settings;

pub(crate) async fn sync(dry_run: bool, json: bool) -> ExitCode {
    let (settings, hook_settings) =
        match Settings::from_env()
            .map_err(|e| e.to_string())
            .and_then(|s| {
                SubscriptionSettings::from_env()
                    .map(|h| (s, h))
                    .map_err(|e| e.to_string())
            }) {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
    let client = match AdoClient::new(settings.ado.clone()) {
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
