//! The command line: `serve`, `migrate`, `check-config`, `user add`, `apikey create`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::auth;
use crate::config::{redact_url, Config};
use crate::domain::{check_password, Actor, NewApiKey, NewUser, Role, Scope};
use crate::startup::{ensure_first_admin, open_store, shutdown_signal, App};
use crate::storage::Store;

/// Kommutator: real-time communications hub and CRM core.
#[derive(Debug, Parser)]
#[command(name = "kommutator", version, about)]
pub struct Cli {
    /// Config file (TOML). Also `KOMMUTATOR_CONFIG`. Without one, built-in defaults apply.
    #[arg(long, global = true, env = "KOMMUTATOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub (the default).
    Serve(ServeArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Check the configuration and print it with secrets hidden.
    CheckConfig,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
}

/// `serve` options (override the config).
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Database URL (`sqlite://PATH` or `postgres://...`).
    #[arg(long)]
    pub database: Option<String>,
}

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. Without --password-stdin a one-time password is generated and printed.
    Add {
        /// Login.
        #[arg(long)]
        login: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// admin, supervisor, manager or operator.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Department id.
        #[arg(long)]
        department: Option<i64>,
        /// Email.
        #[arg(long)]
        email: Option<String>,
        /// Read the password from standard input instead.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `apikey` subcommands.
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key and print its secret once.
    Create {
        /// What it is for.
        #[arg(long)]
        name: String,
        /// Scopes (repeat): clients:read, clients:write, interests:read, interests:write,
        /// interactions:read, interactions:write, dialogs:read, dialogs:write, calls:read,
        /// calls:write, changes:read, admin.
        #[arg(long = "scope", required = true, value_parser = parse_scope)]
        scopes: Vec<Scope>,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| "use admin, supervisor, manager or operator".to_owned())
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s).ok_or_else(|| {
        format!(
            "unknown scope; use one of: {}",
            Scope::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Loads the configuration for `cli` from its file and the process environment.
///
/// # Errors
/// A config error naming the key.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Ok(Config::load(cli.config.as_deref(), std::env::vars())?)
}

/// Runs the parsed command.
///
/// # Errors
/// Whatever the command fails with, with context.
pub async fn run(cli: Cli, mut config: Config) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            if let Some(l) = args.listen {
                config.server.listen = l;
            }
            if let Some(d) = args.database {
                config.database.url = d;
            }
            serve(config).await
        }
        Command::Migrate => {
            let store = open_store(&config).await?;
            println!(
                "database at {} is up to date",
                redact_url(&config.database.url)
            );
            store.close().await;
            Ok(())
        }
        Command::CheckConfig => {
            // A closed pipe (`check-config | head`) is not an error worth a panic.
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "configuration is valid:\n{config:#?}");
            Ok(())
        }
        Command::User(UserCommand::Add {
            login,
            name,
            role,
            department,
            email,
            password_stdin,
        }) => {
            let (password, generated) = if password_stdin {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("cannot read the password from standard input")?;
                (s.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (auth::one_time_password(), true)
            };
            check_password("password", &password).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let store = open_store(&config).await?;
            let pw = password.clone();
            let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
                .await?
                .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
            let input = NewUser {
                login,
                name,
                email,
                role,
                department_id: department,
                password: password.clone(),
                must_change_password: generated,
            };
            let user = store
                .create_user(&Actor::System, &input, &hash)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "created user {} (id {}, {})",
                user.login,
                user.id,
                user.role.as_str()
            );
            if generated {
                println!(
                    "one-time password: {password}\n(the user chooses a new one at first sign-in)"
                );
            }
            store.close().await;
            Ok(())
        }
        Command::Apikey(ApiKeyCommand::Create { name, scopes }) => {
            let store = open_store(&config).await?;
            let (secret, prefix, hash) = auth::new_api_key();
            let key = store
                .create_api_key(&Actor::System, &NewApiKey { name, scopes }, &prefix, &hash)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "created API key {} (id {})\nsecret (shown once): {secret}",
                key.prefix, key.id
            );
            store.close().await;
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let public = config.server.public_url.clone();
    let app = App::build(config).await?;
    let addr = app.local_addr()?;
    let base = public.unwrap_or_else(|| format!("http://{addr}"));
    if let Some((login, password)) = ensure_first_admin(app.state().store.as_ref()).await? {
        println!("First start: created the administrator account.\n  login:    {login}\n  password: {password}\n  (a one-time password: you will choose a new one at first sign-in; it is not shown again)");
    }
    println!("Kommutator listening on {addr}\n  console:  {base}/\n  REST API: {base}/api/v1 (OpenAPI: {base}/api/v1/openapi.json)");
    tracing::info!(%addr, "serving");
    app.run_until_stopped(shutdown_signal()).await
}
