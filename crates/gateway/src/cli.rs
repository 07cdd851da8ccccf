//! The `paygate` subcommands. Each loads settings the same way `serve` does, so a shell
//! command sees the same database as the server.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use paygate_core::{AppName, OrderId};
use paygate_store::{NewApiKey, OrderFilter, Store};

use crate::auth::{Role, generate_key};
use crate::config::{Environment, Settings};
use crate::startup::Application;

/// `paygate keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once.
    Create {
        /// `merchant` or `finance`.
        #[arg(long)]
        role: String,
        /// A label for people.
        #[arg(long)]
        name: String,
        /// Limit a merchant key to these apps (repeatable); all apps when absent.
        #[arg(long = "app")]
        apps: Vec<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key's id from `keys list`.
        id: String,
    },
}

/// `paygate orders …`.
#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// List recent orders.
    List {
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one order as JSON.
    Show {
        /// The order id (`ord_…`).
        id: String,
    },
    /// Write every order as CSV to standard output.
    Export,
}

/// `paygate reconcile`: one app's bill of one Beijing day, now.
#[derive(Debug, clap::Args)]
pub struct ReconcileCommand {
    /// The app, as configured.
    #[arg(long)]
    pub app: String,
    /// `wechat` or `alipay`, when both have an app of that name.
    #[arg(long)]
    pub provider: Option<String>,
    /// The Beijing day, `YYYY-MM-DD`.
    #[arg(long, alias = "date")]
    pub day: String,
    /// Reconcile this bill file (as downloaded from the provider) instead of downloading.
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
}

/// `paygate reconcile`: builds the gateway's providers and store as `serve` would (on port 0,
/// serving nothing), reconciles the day and prints the run. On SQLite the server must be
/// stopped first (one process per database file); on PostgreSQL it may run beside it.
#[allow(clippy::print_stdout)]
pub async fn reconcile(config: Option<&Path>, command: ReconcileCommand) -> anyhow::Result<()> {
    let mut settings = settings(config)?;
    settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let day = chrono::NaiveDate::parse_from_str(&command.day, "%Y-%m-%d")
        .context("--day must be YYYY-MM-DD")?;
    let name = AppName::parse(command.app.as_str())?;
    let provider = command
        .provider
        .as_deref()
        .map(paygate_core::ProviderKind::parse)
        .transpose()?;
    let source = match &command.file {
        Some(path) => crate::statements::BillSource::File(
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => crate::statements::BillSource::Download,
    };
    let app = Application::build(settings).await?;
    let state = app.state();
    let provider_app = crate::statements::find_app(state, &name, provider)?;
    let outcome = crate::statements::reconcile_day(state, provider_app, day, source).await?;
    let result = match outcome {
        crate::statements::DayOutcome::Reconciled { run, paid } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "run": crate::routes::statements::run_view(&run),
                    "paid": paid,
                }))?
            );
            Ok(())
        }
        crate::statements::DayOutcome::NotReady => Err(anyhow::anyhow!(
            "the provider is still making this bill; try again later"
        )),
        crate::statements::DayOutcome::BillMissing => Err(anyhow::anyhow!(
            "the provider has no bill for a day with payments or refunds in our books"
        )),
        crate::statements::DayOutcome::Unsupported => Err(anyhow::anyhow!(
            "this app's provider offers no bill download"
        )),
    };
    state.store.clone().close().await.ok();
    result
}

/// Loads the settings and starts logging the way they say.
fn settings(config: Option<&Path>) -> anyhow::Result<Settings> {
    let settings = Settings::load(config)?;
    crate::telemetry::init(settings.log.format);
    Ok(settings)
}

async fn store(settings: &Settings) -> anyhow::Result<Store> {
    Store::connect(&settings.database_url, settings.pool_options())
        .await
        .context("opening the database")
}

/// Runs a command's `work` on the configured database, then closes the store before the
/// process exits, whatever `work` returned (see [`Store::close`] for why that matters).
async fn with_store(
    settings: &Settings,
    work: impl AsyncFnOnce(&Store) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let store = store(settings).await?;
    let result = work(&store).await;
    store.close().await.context("closing the database")?;
    result
}

/// `paygate serve`: starts the gateway; in the sandbox environment, on a fresh database, creates
/// and prints a merchant and a finance key, and a walkthrough. In production nothing secret is
/// printed (stdout ends up in the logs): the operator creates keys with `paygate keys create`.
pub async fn serve(config: Option<&Path>, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let mut settings = settings(config)?;
    if let Some(listen) = listen {
        settings.listen = listen;
    }
    let app = Application::build(settings.clone()).await?;
    let base = format!("http://{}:{}", settings.listen.ip(), app.port());
    let first_keys = match settings.environment {
        Environment::Sandbox => ensure_initial_keys(&app.state().store).await?,
        Environment::Production => None,
    };
    print_banner(&base, &app, first_keys.as_ref());
    tracing::info!(%base, "paygate listening");
    app.run_until_stopped().await.context("serving")
}

/// The keys created on first start, shown once.
pub struct InitialKeys {
    /// The merchant key.
    pub merchant: String,
    /// The finance key.
    pub finance: String,
}

/// Creates a merchant and a finance key when the database has none.
pub async fn ensure_initial_keys(store: &Store) -> anyhow::Result<Option<InitialKeys>> {
    if !store.list_api_keys().await?.is_empty() {
        return Ok(None);
    }
    let merchant = create_key(store, Role::Merchant, "initial merchant key", Vec::new()).await?;
    let finance = create_key(store, Role::Finance, "initial finance key", Vec::new()).await?;
    Ok(Some(InitialKeys { merchant, finance }))
}

async fn create_key(
    store: &Store,
    role: Role,
    name: &str,
    apps: Vec<AppName>,
) -> anyhow::Result<String> {
    let key = generate_key(role);
    store
        .insert_api_key(NewApiKey {
            name: name.to_owned(),
            role,
            key_hash: key.hash,
            key_prefix: key.prefix,
            apps,
            created_at: chrono::Utc::now(),
        })
        .await?;
    Ok(key.plaintext)
}

#[allow(clippy::print_stdout)]
fn print_banner(base: &str, app: &Application, keys: Option<&InitialKeys>) {
    println!("paygate is listening on {base}");
    if let Some(sandbox) = app.sandbox() {
        println!(
            "embedded sandbox (WeChat Pay v2 and APIv3 + Alipay simulators): {}/sandbox",
            sandbox.base_url()
        );
    }
    let Some(keys) = keys else {
        println!(
            "No API key is printed here; create one with `paygate keys create --role merchant --name …` (and `--role finance`)."
        );
        return;
    };
    println!("\nCreated two API keys. They are shown ONCE; only their hashes are stored.");
    println!("  merchant key: {}", keys.merchant);
    println!("  finance key:  {}\n", keys.finance);
    if let Some(sandbox) = app.sandbox() {
        print_walkthrough(base, sandbox.base_url(), keys);
    }
}

/// The banner's copy-and-paste walkthrough: both orders created, paid as the sandbox's buyer
/// (the Alipay app order by its `order_string`, as the Alipay SDK would present it; the WeChat
/// order by its number), refunded, and today's totals. README.md shows the same steps and CI
/// runs them (deploy/check-docs.sh), so they stay payable.
#[allow(clippy::print_stdout)]
fn print_walkthrough(base: &str, sandbox: &str, keys: &InitialKeys) {
    // Finance days are Beijing calendar days; "today" is [today, tomorrow) there.
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    let tomorrow = today.succ_opt().unwrap_or(today);
    let json = "-H 'Content-Type: application/json'";
    println!("Try it (copy and paste into bash or zsh):\n");
    println!("  export M={} F={}", keys.merchant, keys.finance);
    println!("  export BASE={base} SANDBOX={sandbox}");
    println!(
        "  # an Alipay app order: pay_params.order_string is what the app hands to the Alipay SDK"
    );
    println!(
        "  ORDER_STRING=$(curl -s -H \"Authorization: Bearer $M\" {json} \\\n    -d '{{\"provider\":\"alipay\",\"channel\":\"app\",\"out_trade_no\":\"demo_alipay_1\",\"amount\":1999,\"subject\":\"Tea\"}}' \\\n    $BASE/v1/orders | sed -n 's/.*\"order_string\":\"\\([^\"]*\\)\".*/\\1/p')"
    );
    println!(
        "  # play the buyer's Alipay app: the sandbox checks the order_string's signature, pays, and notifies paygate"
    );
    println!(
        "  curl -s {json} -d \"{{\\\"order_string\\\":\\\"$ORDER_STRING\\\"}}\" $SANDBOX/sandbox/pay"
    );
    println!("  # a WeChat mini-program order: returns the six wx.requestPayment fields");
    println!(
        "  curl -s -H \"Authorization: Bearer $M\" {json} \\\n    -d '{{\"provider\":\"wechat\",\"channel\":\"mini_program\",\"out_trade_no\":\"demo_wechat_1\",\"amount\":1,\"subject\":\"Tea\",\"openid\":\"o_demo_buyer\",\"client_ip\":\"203.0.113.7\"}}' \\\n    $BASE/v1/orders"
    );
    println!("  # play the WeChat buyer: pay by out_trade_no; the signed notify goes to paygate");
    println!(
        "  curl -s {json} -d '{{\"provider\":\"wechat\",\"out_trade_no\":\"demo_wechat_1\"}}' $SANDBOX/sandbox/pay"
    );
    println!("  # both are paid (the notify arrives within a second)");
    println!("  sleep 2");
    println!(
        "  curl -s -H \"Authorization: Bearer $M\" \"$BASE/v1/orders?out_trade_no=demo_alipay_1\""
    );
    println!(
        "  ORDER_ID=$(curl -s -H \"Authorization: Bearer $M\" \"$BASE/v1/orders?out_trade_no=demo_wechat_1\" | grep -o '\"id\":\"ord_[^\"]*\"' | head -1 | cut -d'\"' -f4)"
    );
    println!("  # refund the WeChat order's 1 fen");
    println!(
        "  curl -s -H \"Authorization: Bearer $M\" {json} -d '{{\"amount\":1,\"reason\":\"demo\"}}' $BASE/v1/orders/$ORDER_ID/refunds"
    );
    println!(
        "  # the same merchant through WeChat Pay APIv3 (app sandbox-v3): a native order returns a code_url"
    );
    println!(
        "  curl -s -H \"Authorization: Bearer $M\" {json} \\\n    -d '{{\"provider\":\"wechat\",\"app\":\"sandbox-v3\",\"channel\":\"native\",\"out_trade_no\":\"demo_v3_1\",\"amount\":1,\"subject\":\"Tea\",\"client_ip\":\"203.0.113.7\"}}' \\\n    $BASE/v1/orders"
    );
    println!(
        "  # pay it: a signed TRANSACTION.SUCCESS notify with an AES-256-GCM resource follows"
    );
    println!(
        "  curl -s {json} -d '{{\"provider\":\"wechat\",\"out_trade_no\":\"demo_v3_1\"}}' $SANDBOX/sandbox/pay"
    );
    println!("  # finance: today's totals (a Beijing calendar day, [from, to))");
    println!(
        "  curl -s -H \"Authorization: Bearer $F\" \"$BASE/v1/reports/summary?from={today}&to={tomorrow}&group_by=provider\"\n"
    );
    println!(
        "The sandbox's whole buyer and test API: docs/sandbox.md. Integrating a client: docs/integrate.md."
    );
}

/// `paygate config-reference`: the generated part of docs/config.md.
#[allow(clippy::print_stdout)]
pub fn config_reference() -> anyhow::Result<()> {
    print!("{}", crate::config_reference::markdown());
    Ok(())
}

/// `paygate migrate`.
#[allow(clippy::print_stdout)]
pub async fn migrate(config: Option<&Path>) -> anyhow::Result<()> {
    let settings = settings(config)?;
    with_store(&settings, async |_| Ok(())).await?;
    println!(
        "migrations applied to {}",
        redact_url(&settings.database_url)
    );
    Ok(())
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// `paygate keys …`.
#[allow(clippy::print_stdout)]
pub async fn keys(config: Option<&Path>, command: KeysCommand) -> anyhow::Result<()> {
    let settings = settings(config)?;
    with_store(&settings, async |store| keys_on(store, command).await).await
}

#[allow(clippy::print_stdout)]
async fn keys_on(store: &Store, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { role, name, apps } => {
            let role = Role::parse(&role).context("--role must be merchant or finance")?;
            let apps = apps
                .iter()
                .map(|a| AppName::parse(a.as_str()).map_err(anyhow::Error::from))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let key = create_key(store, role, &name, apps).await?;
            println!("{key}");
            eprintln!("(shown once; only its hash is stored)");
        }
        KeysCommand::List => {
            for key in store.list_api_keys().await? {
                println!(
                    "{}\t{}\t{}…\t{}\t{}",
                    key.id,
                    key.role.as_str(),
                    key.key_prefix,
                    key.name,
                    if key.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let id = paygate_store::ApiKeyId::parse(&id)?;
            store.revoke_api_key(&id, chrono::Utc::now()).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

/// `paygate orders …`.
#[allow(clippy::print_stdout)]
pub async fn orders(config: Option<&Path>, command: OrdersCommand) -> anyhow::Result<()> {
    let settings = settings(config)?;
    with_store(&settings, async |store| orders_on(store, command).await).await
}

#[allow(clippy::print_stdout)]
async fn orders_on(store: &Store, command: OrdersCommand) -> anyhow::Result<()> {
    match command {
        OrdersCommand::List { status, limit } => {
            let mut filter = OrderFilter::default();
            if let Some(status) = status {
                filter.statuses = vec![paygate_core::OrderStatus::parse(&status)?];
            }
            for o in store
                .list_orders(&filter, limit.clamp(1, 1000), None)
                .await?
                .items
            {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    o.id,
                    o.provider,
                    o.app,
                    o.out_trade_no,
                    o.amount.to_yuan_string(),
                    o.status
                );
            }
        }
        OrdersCommand::Show { id } => {
            let order = store.order(&OrderId::parse(id.as_str())?).await?;
            println!("{}", serde_json::to_string_pretty(&order)?);
        }
        OrdersCommand::Export => {
            print!("{}", crate::routes::finance::CSV_HEADER);
            let filter = OrderFilter::default();
            let mut cursor = None;
            loop {
                let page = store.list_orders(&filter, 500, cursor.as_ref()).await?;
                for o in &page.items {
                    print!("{}", crate::routes::finance::csv_row(o));
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
    }
    Ok(())
}

/// `paygate sandbox`: the simulators alone.
#[allow(clippy::print_stdout)]
pub async fn sandbox(listen: SocketAddr) -> anyhow::Result<()> {
    crate::telemetry::init(crate::telemetry::LogFormat::default());
    let mut config = paygate_sandbox::SandboxConfig::new(listen);
    config.keys_file = Some("paygate-sandbox.json".into());
    let sandbox = paygate_sandbox::Sandbox::start(config).await?;
    println!("sandbox listening on {}", sandbox.base_url());
    println!(
        "# gateway config for these simulators (contains secrets):\n{}",
        sandbox.credentials().export_toml("sandbox")
    );
    println!(
        "# the same WeChat merchant through APIv3 (add it to serve both; orders then name the app):\n{}",
        sandbox.credentials().export_v3_toml("sandbox-v3")
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    sandbox.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://paygate.db"), "sqlite://paygate.db");
    }
}
