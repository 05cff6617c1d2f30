//! Assembly: builds every stage from a validated [`Config`], binds the listeners, and runs
//! until shut down. Tests use it with port 0 and drive the real thing.
//!
//! Start-up order follows the data flow: store → (embedded broker) → journal → ingress; the
//! embedded broker opens first because its writer commits the journal's appends (one commit
//! from callback to route queue), while RabbitMQ comes up in the background. Shutdown runs
//! backwards: stop accepting, let in-flight requests finish (bounded by
//! `server.shutdown_grace_secs`), then let the writers commit what they hold and close the
//! store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState, BrokerSlot};
use crate::broker::embedded::{EmbeddedBroker, EmbeddedOptions};
use crate::broker::{AnyBroker, Broker, BrokerError, WRITEBACK_QUEUE};
use crate::config::{BrokerKind, Config, ConfigError, ResolvedSecrets, StagePlan};
use crate::deliver::Connector;
use crate::deliver::stage::{DeliverStage, retry_policy};
use crate::ingress::{self, AppEndpoint};
use crate::journal::{Journal, JournalCipher, JournalError, JournalWriter};
use crate::route::RouteContext;
use crate::stage::{Backoff, RetryPolicy, Shutdown, ShutdownTrigger};
use crate::store::{Store, StoreError};
use crate::wecom::crypto::CallbackCrypto;
use crate::writeback::{Sender, WritebackStage};

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration or secrets.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Journal keys.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The embedded broker could not be opened on the store.
    #[error("the embedded broker cannot be opened on the store")]
    Broker(#[source] BrokerError),
    /// An app's credentials are unusable.
    #[error("apps.{app}: the Token or EncodingAESKey is unusable")]
    App {
        /// App name.
        app: String,
        /// What is wrong.
        #[source]
        source: crate::wecom::crypto::CryptoError,
    },
    /// Mappings, connectors or the WeCom API settings are unusable.
    #[error(transparent)]
    Route(#[from] crate::route::RouteSetupError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A running bridge.
#[derive(Debug)]
pub struct RunningBridge {
    /// Where WeCom callbacks are served.
    pub public_addr: SocketAddr,
    /// Where the admin API is served.
    pub admin_addr: SocketAddr,
    shutdown: ShutdownTrigger,
    servers: Vec<JoinHandle<()>>,
    pipeline: JoinHandle<()>,
    broker: BrokerSlot,
    background: Vec<JoinHandle<()>>,
    /// The journal's own writer (RabbitMQ); on the embedded broker its writer commits.
    writer: Option<JournalWriter>,
}

/// Builds the callback endpoints from resolved secrets. It does not log: `start` warns about
/// demo credentials, `check` prints its own summary (so each says it once).
pub fn build_endpoints(
    config: &Config,
    secrets: &ResolvedSecrets,
) -> Result<Vec<Arc<AppEndpoint>>, StartError> {
    let mut endpoints = Vec::new();
    for (name, app) in &config.apps {
        let s = &secrets.apps[name];
        let crypto = CallbackCrypto::new(s.token.expose(), s.encoding_aes_key.expose()).map_err(
            |source| StartError::App {
                app: name.clone(),
                source,
            },
        )?;
        endpoints.push(Arc::new(AppEndpoint {
            name: name.clone(),
            config: app.clone(),
            crypto,
        }));
    }
    Ok(endpoints)
}

/// Logs, once per app at start, settings that let anyone forge or replay its callbacks.
fn warn_about_weak_apps(config: &Config, secrets: &ResolvedSecrets) {
    for (name, app) in &config.apps {
        if secrets.apps.get(name).is_some_and(|s| s.is_demo()) {
            tracing::warn!(
                app = %name,
                path = %app.path,
                "DEMO CREDENTIALS: this app uses the public sample Token/EncodingAESKey from WeCom's documentation; \
                 anyone can forge its callbacks. Replace them before connecting a real WeCom app."
            );
        }
        if !app.check_timestamp {
            tracing::warn!(app = %name, "timestamp check is off for this app: old captured requests can be replayed");
        }
    }
}

async fn bind(addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Starts the bridge: opens the store, starts the journal, binds and serves.
pub async fn start(config: &Config) -> Result<RunningBridge, StartError> {
    crate::telemetry::metrics_handle();
    // Validated once (at load); the typed values are used from here on.
    let checked = config.checked()?;
    // Secrets are read once here and handed to every stage that needs one.
    let secrets = config.resolve()?;
    let endpoints = build_endpoints(config, &secrets)?;
    warn_about_weak_apps(config, &secrets);
    let tokens = crate::console::TokenBook::resolve(&config.admin, secrets.admin_token.clone())?;

    let cipher = JournalCipher::from_config(&config.journal)?;
    let path = config.store.path.clone();
    let sealer = cipher.sealer();
    let store = tokio::task::spawn_blocking(move || Store::open(&path, sealer))
        .await
        .map_err(|e| StoreError::Db(e.to_string()))??;
    let ledger = crate::record::Ledger::embedded(store.clone());
    let counts = store.journal_counts()?;
    tracing::info!(
        store = %config.store.path.display(),
        entries = counts.entries,
        unpublished = counts.unpublished,
        "journal open"
    );

    let route = Arc::new(RouteContext::from_config(config, &secrets, store.clone())?);
    tracing::info!(
        mappings = route.catalog.mappings.len(),
        connectors = route.catalog.connectors.len(),
        "catalog loaded"
    );

    let public = bind(&config.server.listen).await?;
    let admin_listener = bind(&config.admin.listen).await?;
    let public_addr = public.local_addr().map_err(|source| StartError::Bind {
        addr: config.server.listen.clone(),
        source,
    })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.admin.listen.clone(),
            source,
        })?;

    // The last fallible step: the embedded broker holds the store from here on.
    let broker: BrokerSlot = Arc::new(tokio::sync::OnceCell::new());
    let (journal, writer) = match config.broker.kind {
        // One commit from callback to route queue: the broker's writer journals.
        BrokerKind::Embedded => {
            let opts = EmbeddedOptions::from_config(&config.broker);
            let embedded = EmbeddedBroker::open(store.clone(), opts)
                .await
                .map_err(StartError::Broker)?;
            let journal = Journal::start_embedded(store.clone(), cipher, embedded.clone());
            let _ = broker.set(AnyBroker::Embedded(embedded));
            (journal, None)
        }
        BrokerKind::Rabbitmq => {
            let (journal, writer) = Journal::start(store.clone(), cipher, config.journal.max_batch);
            (journal, Some(writer))
        }
    };
    let admin_state = AdminState {
        journal: journal.clone(),
        console: Arc::new(
            crate::console::ConsoleShared::new(config.console.clone(), tokens).with_wecom(
                crate::console::WeComSignIn::from_config(&config.console, &config.apps, &route),
            ),
        ),
        config_view: Arc::new(format!("{config:#?}")),
        broker: broker.clone(),
        broker_kind: format!("{:?}", config.broker.kind).to_lowercase(),
        route: route.clone(),
        ledger: ledger.clone(),
    };
    let log_limit = Arc::new(ingress::log_limit::LogLimiter::new(Duration::from_secs(
        config.server.refusal_log_interval_secs,
    )));
    let body_limits = ingress::BodyLimits {
        max_body_bytes: config.server.max_body_bytes,
        body_read_timeout: Duration::from_millis(config.server.body_read_timeout_ms),
    };
    let public_router = ingress::router(
        endpoints.clone(),
        journal.clone(),
        body_limits,
        log_limit.clone(),
    )
    .merge(admin::public_health_router(admin_state.clone()));
    let guard = admin::guard::AdminGuard::new(&config.admin, admin_addr);
    let admin_router = admin::admin_router(admin_state, guard);

    let (shutdown, rx_pipeline) = Shutdown::channel();

    let limits = ingress::server::ConnectionLimits {
        header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
        max_connections: config.server.max_connections,
        shutdown_grace: Duration::from_secs(config.server.shutdown_grace_secs),
    };
    let serve = |listener: TcpListener, router: axum::Router, name: &'static str| {
        tokio::spawn(ingress::server::serve(
            listener,
            router,
            limits,
            name,
            log_limit.clone(),
            shutdown.watch(),
        ))
    };
    let servers = vec![
        serve(public, public_router, "public"),
        serve(admin_listener, admin_router, "admin"),
    ];
    let retention = Duration::from_secs(config.journal.dedup_retention_hours * 3600);
    let delivers = deliver_stages(config, &checked.deliver, &route);
    let writeback = writeback_stage(config, &checked.writeback, &route, &ledger);
    let pipeline = tokio::spawn(run_pipeline(
        config.broker.clone(),
        store.clone(),
        journal.clone(),
        route.clone(),
        Plans {
            route: checked.route.clone(),
            delivers,
            writeback,
            ledger: ledger.clone(),
        },
        broker.clone(),
        rx_pipeline.clone(),
    ));
    let mut background = vec![journal.spawn_dedup_pruner(retention)];
    if config.ledger.retention_days > 0 {
        background.push(ledger.spawn_pruner(
            Duration::from_secs(config.ledger.retention_days * 86_400),
            Duration::from_secs(config.ledger.prune_interval_secs.max(1)),
        ));
    }
    background.push(tokio::spawn(crate::console::run_audit_pruner(
        store.clone(),
        config.console.audit_retention_days,
        rx_pipeline.clone(),
    )));
    if config.reconcile.enabled {
        background.push(tokio::spawn(crate::route::reconcile::run_periodic(
            route.clone(),
            journal,
            Duration::from_secs(config.reconcile.interval_secs),
            Duration::from_secs(config.reconcile.lookback_days * 86_400),
            rx_pipeline,
        )));
    }

    for e in &endpoints {
        tracing::info!(app = %e.name, url = %format!("http://{public_addr}{}", e.config.path), "serving WeCom callbacks");
    }
    tracing::info!(%admin_addr, "admin API, /metrics, /healthz, /readyz");
    if config.console.enabled {
        tracing::info!(url = %format!("http://{admin_addr}/console"), "operator console");
    }
    Ok(RunningBridge {
        public_addr,
        admin_addr,
        shutdown,
        servers,
        pipeline,
        broker,
        background,
        writer,
    })
}

impl RunningBridge {
    /// The broker, once it is up (tests use it to look into queues).
    pub fn broker(&self) -> Option<AnyBroker> {
        self.broker.get().cloned()
    }

    /// Stops accepting, waits for in-flight requests (up to the grace period, whatever the
    /// clients do: the listeners close what is left), lets the journal commit what it holds,
    /// and closes the store.
    pub async fn shutdown(self) {
        self.shutdown.stop();
        // Both listeners drain at once, each bounded by the grace period.
        for server in self.servers {
            let _ = server.await;
        }
        let _ = self.pipeline.await;
        if let Some(b) = self.broker.get().cloned() {
            b.close().await;
        }
        for task in self.background {
            task.abort();
            let _ = task.await;
        }
        if let Some(writer) = self.writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        tracing::info!("stopped cleanly");
    }
}

/// The plans of the stages that consume the broker.
struct Plans {
    /// The route stage.
    route: StagePlan,
    /// One deliver stage per connector that could be built.
    delivers: Vec<DeliverPlan>,
    /// The writeback stage.
    writeback: (Arc<WritebackStage>, StagePlan),
    /// The ledger the deliver stages record in.
    ledger: crate::record::Ledger,
}

/// The deliver stage of one connector (built once the broker is up), with its retry policy
/// and concurrency cap.
struct DeliverPlan {
    connector: Arc<Connector>,
    queue: String,
    policy: RetryPolicy,
    concurrency: usize,
}

/// The writeback stage: every app that can send messages (its secret and `agent_id`).
fn writeback_stage(
    config: &Config,
    plan: &StagePlan,
    route: &RouteContext,
    ledger: &crate::record::Ledger,
) -> (Arc<WritebackStage>, StagePlan) {
    let senders = config
        .apps
        .iter()
        .map(|(name, app)| {
            let credentials = route.apps.get(name).and_then(|a| a.credentials.clone());
            let sender = Sender {
                credentials,
                agent_id: app.agent_id,
            };
            (name.clone(), sender)
        })
        .collect();
    let stage = WritebackStage::new(ledger.clone(), &route.api, senders, plan.policy.clone());
    (Arc::new(stage), plan.clone())
}

/// Builds one deliver stage per connector. A connector that cannot be built (a secret is
/// missing, its retry schedule is not a broker tier) is logged and counted, and its queue is
/// not consumed: its jobs wait in the broker until the operator fixes it and restarts.
fn deliver_stages(config: &Config, fallback: &StagePlan, route: &RouteContext) -> Vec<DeliverPlan> {
    let mut plans = Vec::new();
    for spec in &route.catalog.connectors {
        let connector = match Connector::build(spec.clone()) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                metrics::counter!("wecom_bridge_deliver_unbuilt_connectors_total", "connector" => spec.name.clone())
                    .increment(1);
                tracing::error!(connector = %spec.name, error = %e,
                    "connector cannot be built; its deliver queue is NOT consumed and its jobs wait in the broker \
                     (fix the secret or setting, then restart; `wecom-bridge check` lists every problem)");
                continue;
            }
        };
        let policy = match retry_policy(
            &connector,
            &config.broker.retry_tiers_secs,
            &fallback.policy,
        ) {
            Ok(p) => p,
            Err(e) => {
                metrics::counter!("wecom_bridge_deliver_unbuilt_connectors_total", "connector" => spec.name.clone())
                    .increment(1);
                tracing::error!(connector = %spec.name, error = %e,
                    "connector retry schedule is unusable; its deliver queue is NOT consumed (fix [retry], then restart)");
                continue;
            }
        };
        plans.push(DeliverPlan {
            queue: crate::route::deliver_queue(&spec.name),
            concurrency: (spec.concurrency as usize).max(1),
            connector,
            policy,
        });
    }
    plans
}

/// Brings the broker up (retrying in the background while it is unreachable: ingress keeps
/// journaling meanwhile), then runs the stages that consume it until shutdown.
async fn run_pipeline(
    cfg: crate::config::BrokerConfig,
    store: Store,
    journal: Journal,
    route: Arc<RouteContext>,
    plans: Plans,
    slot: BrokerSlot,
    mut shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(15));
    let broker = loop {
        // The embedded broker was opened at start (the journal commits through it).
        if let Some(opened) = slot.get() {
            break opened.clone();
        }
        match AnyBroker::from_config(&cfg, &store).await {
            Ok(b) => break b,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(kind = ?cfg.kind, error = %e, retry_in_ms = delay.as_millis() as u64,
                    "broker not reachable; callbacks are still accepted and journaled, and will be relayed once it is");
                if !shutdown.sleep(delay).await {
                    return;
                }
            }
        }
    };
    tracing::info!(kind = broker.kind(), "broker ready");
    if slot.get().is_none() {
        let _ = slot.set(broker.clone());
    }
    match broker {
        AnyBroker::Embedded(b) => run_stages(b, journal, route, plans, shutdown).await,
        AnyBroker::Rabbitmq(b) => run_stages(b, journal, route, plans, shutdown).await,
    }
}

async fn run_stages<B: Broker>(
    broker: B,
    journal: Journal,
    ctx: Arc<RouteContext>,
    plans: Plans,
    shutdown: Shutdown,
) {
    let Plans {
        route: route_plan,
        delivers,
        writeback: (writeback, writeback_plan),
        ledger,
    } = plans;
    let mut stages = Vec::new();
    for d in delivers {
        tracing::info!(queue = %d.queue, concurrency = d.concurrency, "deliver stage consuming");
        let stage = DeliverStage::new(
            d.connector,
            ctx.catalog.clone(),
            ledger.clone(),
            d.policy.clone(),
            broker.clone(),
        );
        stages.push(tokio::spawn(crate::stage::run(
            broker.clone(),
            d.queue,
            Arc::new(stage),
            d.policy,
            d.concurrency,
            shutdown.clone(),
        )));
    }
    // Consumed when some mapping notifies (consuming declares the queue on RabbitMQ).
    if ctx
        .catalog
        .mappings
        .iter()
        .any(|m| m.compiled.writeback().is_some())
    {
        tracing::info!(
            queue = WRITEBACK_QUEUE,
            concurrency = writeback_plan.concurrency,
            "writeback stage consuming"
        );
        stages.push(tokio::spawn(crate::stage::run(
            broker.clone(),
            WRITEBACK_QUEUE.to_string(),
            writeback,
            writeback_plan.policy,
            writeback_plan.concurrency,
            shutdown.clone(),
        )));
    }
    let relay = tokio::spawn(crate::journal::relay::run(
        journal,
        broker.clone(),
        shutdown.clone(),
    ));
    let route = tokio::spawn(crate::route::run(broker, ctx, route_plan, shutdown));
    let _ = relay.await;
    let _ = route.await;
    for s in stages {
        let _ = s.await;
    }
}
