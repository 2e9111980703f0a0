//! `timedeal-operator`: the Timedeal operator binary.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use timedeal_operator::{
    company::tenancy::PortalAccount,
    reconcile::Config,
    resources::{
        compute::Defaults,
        network::{DnsPorts, Labels, Peers, Ports},
        quantity::Quantity,
        redis::StorageDefaults,
        Mail, Settings,
    },
    run,
};

mod check;

#[derive(Parser)]
#[command(
    name = "timedeal-operator",
    version,
    about = "Rents out flash-sale infrastructure, one TimeDeal at a time"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile TimeDeals in the cluster KUBECONFIG (or the pod's service account) reaches.
    Run(Box<RunArgs>),
    /// Print the Company and TimeDeal CustomResourceDefinitions as YAML (pipe it to `kubectl apply -f -`).
    Crd {
        /// Print it as the Helm chart's template instead.
        #[arg(long)]
        helm: bool,
    },
    /// Print the ClusterRole and Role the operator needs, as YAML.
    Rbac {
        /// The operator's namespace.
        #[arg(long, default_value = "timedeal-system")]
        namespace: String,
        /// The platform PostgreSQL Secret's name.
        #[arg(long, default_value = "timedeal-postgres")]
        postgres_secret: String,
    },
    /// Print the children the operator would apply for a TimeDeal at a moment, as YAML, without
    /// a cluster (secret values are placeholders).
    Render(Box<RenderArgs>),
    /// Check TimeDeal files against every rule of the CRD, as `kubectl apply` would, without a
    /// cluster. Exits non-zero when any file is invalid.
    Check {
        /// TimeDeal YAML or JSON files, or directories of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// What each deal's children get where its spec says nothing: shared by `run` and `render`.
#[derive(Args)]
struct DealDefaults {
    /// The storefront image, unless a deal sets `spec.images.tenantApp`.
    #[arg(long, env = "TIMEDEAL_TENANT_IMAGE", default_value = concat!("ghcr.io/timedeal/tenant-app:", env!("CARGO_PKG_VERSION")))]
    tenant_image: String,
    /// The Redis image, unless a deal sets `spec.images.redis`.
    #[arg(
        long,
        env = "TIMEDEAL_REDIS_IMAGE",
        default_value = "redis:7.2.5-alpine"
    )]
    redis_image: String,
    /// CPU each storefront replica requests unless its deal says otherwise: what the autoscaler's
    /// utilisation target is a percentage of.
    #[arg(long, env = "TIMEDEAL_STOREFRONT_CPU_REQUEST", default_value = "250m", value_parser = quantity)]
    storefront_cpu_request: String,
    /// Memory each storefront replica requests unless its deal says otherwise.
    #[arg(long, env = "TIMEDEAL_STOREFRONT_MEMORY_REQUEST", default_value = "128Mi", value_parser = quantity)]
    storefront_memory_request: String,
    /// CPU limit of each storefront replica unless its deal says otherwise; empty for none.
    #[arg(long, env = "TIMEDEAL_STOREFRONT_CPU_LIMIT", default_value = "1", value_parser = optional_quantity)]
    storefront_cpu_limit: Option<String>,
    /// Memory limit of each storefront replica unless its deal says otherwise.
    #[arg(long, env = "TIMEDEAL_STOREFRONT_MEMORY_LIMIT", default_value = "256Mi", value_parser = quantity)]
    storefront_memory_limit: String,
    /// CPU of each deal's Redis unless its deal says otherwise (request and limit: Guaranteed).
    #[arg(long, env = "TIMEDEAL_REDIS_CPU", default_value = "500m", value_parser = quantity)]
    redis_cpu: String,
    /// Memory of each deal's Redis unless its deal says otherwise (request and limit; Redis may
    /// fill 80 % of it).
    #[arg(long, env = "TIMEDEAL_REDIS_MEMORY", default_value = "512Mi", value_parser = quantity)]
    redis_memory: String,
    /// Size of each deal's Redis volume unless its deal says otherwise.
    #[arg(long, env = "TIMEDEAL_REDIS_STORAGE_SIZE", default_value = "1Gi", value_parser = quantity)]
    redis_storage_size: String,
    /// StorageClass of each deal's Redis volume unless its deal says otherwise; empty for the
    /// cluster's default class.
    #[arg(long, env = "TIMEDEAL_REDIS_STORAGE_CLASS")]
    redis_storage_class: Option<String>,
    /// The ingress controller's namespace: the only one, with the operator's, whose pods may
    /// reach a storefront.
    #[arg(
        long,
        env = "TIMEDEAL_INGRESS_NAMESPACE",
        default_value = "ingress-nginx"
    )]
    ingress_namespace: String,
    /// The namespace of the Prometheus that scrapes storefronts' /metrics; empty for none.
    #[arg(long, env = "TIMEDEAL_METRICS_NAMESPACE")]
    metrics_namespace: Option<String>,
    /// The labels of the cluster's DNS pods, such as k8s-app=kube-dns; empty: storefronts may
    /// reach the DNS ports anywhere (NodeLocal DNSCache).
    #[arg(
        long,
        env = "TIMEDEAL_DNS_SELECTOR",
        default_value = "k8s-app=kube-dns"
    )]
    dns_selector: Labels,
    /// The ports DNS answers on, as its pods see them, comma-separated (OpenShift: 53,5353).
    #[arg(long, env = "TIMEDEAL_DNS_PORTS", default_value = "53")]
    dns_ports: DnsPorts,
    /// More ports storefronts may reach PostgreSQL on, besides its URL's, comma-separated: the
    /// pod port behind a Service (PgBouncer: 6432).
    #[arg(long, env = "TIMEDEAL_POSTGRES_EGRESS_PORTS", default_value = "")]
    postgres_egress_ports: Ports,
    /// More ports storefronts may reach the SMTP server on, besides its URL's, comma-separated.
    #[arg(long, env = "TIMEDEAL_SMTP_EGRESS_PORTS", default_value = "")]
    smtp_egress_ports: Ports,
    /// The sender of the storefronts' reminder mails, such as "Timedeal <deals@example.com>";
    /// empty: no email reminders (calendar reminders only).
    #[arg(long, env = "TIMEDEAL_MAIL_FROM", default_value = "")]
    mail_from: String,
    /// The Secret (in the operator's namespace) holding the SMTP URL reminders go through, such
    /// as smtp://user:password@mail.example.com:587?tls=required.
    #[arg(long, env = "TIMEDEAL_SMTP_SECRET", default_value = "timedeal-smtp")]
    smtp_secret: String,
    /// The key of that Secret holding the URL.
    #[arg(long, env = "TIMEDEAL_SMTP_SECRET_KEY", default_value = "url")]
    smtp_secret_key: String,
    /// The randomness beacon (a drand chain's URL) whose first round after a deal's start keys
    /// its pre-queue draw with the seed; `none` where storefronts have no outbound network.
    #[arg(long, env = "TIMEDEAL_DRAW_BEACON", default_value = timedeal_api::DRAND_QUICKNET)]
    draw_beacon: String,
    /// The ingress-nginx cache zone (declared in the controller's http-snippet) each deal's
    /// public head is cached in, through an Ingress of its own; empty: the head is not cached on
    /// the way. Lowercase letters, digits and `_`.
    #[arg(long, env = "TIMEDEAL_HEAD_CACHE_ZONE", default_value = "", value_parser = cache_zone)]
    head_cache_zone: String,
}

impl DealDefaults {
    fn settings(self, operator_namespace: &str) -> Settings {
        Settings {
            tenant_image: self.tenant_image,
            redis_image: self.redis_image,
            storefront_resources: Defaults {
                cpu_request: self.storefront_cpu_request,
                memory_request: self.storefront_memory_request,
                cpu_limit: self.storefront_cpu_limit.filter(|l| !l.is_empty()),
                memory_limit: self.storefront_memory_limit,
            },
            redis_resources: Defaults {
                cpu_request: self.redis_cpu.clone(),
                memory_request: self.redis_memory.clone(),
                cpu_limit: Some(self.redis_cpu),
                memory_limit: self.redis_memory,
            },
            redis_storage: StorageDefaults {
                size: self.redis_storage_size,
                class_name: self.redis_storage_class.filter(|c| !c.is_empty()),
            },
            peers: Peers {
                ingress_namespace: self.ingress_namespace,
                operator_namespace: operator_namespace.to_owned(),
                metrics_namespace: self.metrics_namespace.filter(|n| !n.is_empty()),
                dns_selector: self.dns_selector.0,
                dns_ports: self.dns_ports.0,
                postgres_ports: self.postgres_egress_ports.0,
                smtp_ports: self.smtp_egress_ports.0,
            },
            mail: (!self.mail_from.is_empty()).then_some(Mail {
                from: self.mail_from,
                secret: self.smtp_secret,
                key: self.smtp_secret_key,
            }),
            draw_beacon: self.draw_beacon,
            head_cache_zone: (!self.head_cache_zone.is_empty()).then_some(self.head_cache_zone),
        }
    }
}

#[derive(Args)]
struct RenderArgs {
    /// A TimeDeal YAML or JSON file.
    deal: PathBuf,
    /// The moment to render for (RFC 3339, such as 2026-12-01T12:00:00+09:00); now by default.
    #[arg(long)]
    at: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// The deal's namespace when its file names none.
    #[arg(long, default_value = "default")]
    deal_namespace: String,
    /// The operator's namespace, whose pods may reach the storefront.
    #[arg(long, default_value = "timedeal-system")]
    namespace: String,
    #[command(flatten)]
    defaults: DealDefaults,
}

#[derive(Args)]
struct RunArgs {
    /// The operator's own namespace: where its leader Lease and the PostgreSQL Secret live.
    #[arg(long, env = "POD_NAMESPACE", default_value = "timedeal-system")]
    namespace: String,
    /// The Secret (in the operator's namespace) holding the platform PostgreSQL URL.
    #[arg(
        long,
        env = "TIMEDEAL_POSTGRES_SECRET",
        default_value = "timedeal-postgres"
    )]
    postgres_secret: String,
    /// The key of that Secret holding the URL.
    #[arg(long, env = "TIMEDEAL_POSTGRES_SECRET_KEY", default_value = "url")]
    postgres_secret_key: String,
    #[command(flatten)]
    defaults: DealDefaults,
    /// Seconds one call to the Kubernetes API may take before reconcile gives up on it.
    #[arg(long, env = "TIMEDEAL_API_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    api_timeout: u64,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "TIMEDEAL_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Seconds between two readings of a running storefront's figures.
    #[arg(long, env = "TIMEDEAL_FIGURES_INTERVAL", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    figures_interval: u64,
    /// Seconds deletion waits for a storefront's final figures.
    #[arg(long, env = "TIMEDEAL_FINAL_FIGURES_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    final_figures_timeout: u64,
    /// The rental portal's ServiceAccount (in the operator's namespace), which every approved
    /// company's namespace binds to the ClusterRole `timedeal-portal-deals`.
    #[arg(
        long,
        env = "TIMEDEAL_PORTAL_SERVICE_ACCOUNT",
        default_value = "timedeal-portal"
    )]
    portal_service_account: String,
    /// Storefront replicas the platform can run at once, for the capacity calendar: approving a
    /// deal that would book more at any moment is refused. 0: no calendar.
    #[arg(long, env = "TIMEDEAL_CALENDAR_REPLICAS", default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=100000))]
    calendar_replicas: i32,
    /// Or the platform's storefront CPU (such as 64), divided by each replica's default request
    /// (`--storefront-cpu-request`); used when `--calendar-replicas` is 0. Empty: no calendar.
    #[arg(long, env = "TIMEDEAL_CALENDAR_CPU", default_value = "", value_parser = optional_quantity)]
    calendar_cpu: String,
    /// Every approved company's deals may take `<company>.<suffix>` and the hosts under it.
    /// Empty: only the hosts an admin lists on each Company (`spec.hosts`).
    #[arg(long, env = "TIMEDEAL_COMPANY_HOST_SUFFIX", default_value = "", value_parser = timedeal_api::hosts::parse_suffix)]
    company_host_suffix: String,
    /// Hosts no deal may take, comma-separated: the portal's and the directory's.
    #[arg(long, env = "TIMEDEAL_RESERVED_HOSTS", value_delimiter = ',')]
    reserved_hosts: Vec<String>,
    /// The rental portal's own PostgreSQL role (created by the database's admin, see the
    /// README), which the operator grants what the portal needs in the platform's tables.
    /// Empty: none.
    #[arg(long, env = "TIMEDEAL_PORTAL_DATABASE_ROLE", default_value = "", value_parser = timedeal_api::storage::parse_portal_role)]
    portal_database_role: String,
    /// Run without the leader Lease (one replica only, e.g. on a laptop).
    #[arg(long, env = "TIMEDEAL_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// This replica's name in the Lease; defaults to the pod's name.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

/// A Kubernetes quantity, such as 250m or 512Mi.
fn quantity(text: &str) -> Result<String, String> {
    Quantity::parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

fn cache_zone(text: &str) -> Result<String, String> {
    if text.is_empty() || timedeal_api::head_cache::valid_zone(text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} cannot name an nginx cache zone: use 1 to 63 lowercase letters, digits \
             and '_', such as timedeal_head (or nothing, to cache no head)"
        ))
    }
}

fn optional_quantity(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Ok(String::new())
    } else {
        quantity(text)
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => serve(*args),
        Command::Crd { helm } => {
            if helm {
                print!("{}", timedeal_api::crd_helm_template());
            } else {
                print!("{}", timedeal_api::crd_yaml());
            }
            ExitCode::SUCCESS
        }
        Command::Rbac {
            namespace,
            postgres_secret,
        } => {
            print!(
                "{}",
                timedeal_operator::rbac::yaml(&namespace, &postgres_secret)
            );
            ExitCode::SUCCESS
        }
        Command::Check { paths } => check::run(&paths),
        Command::Render(args) => render(*args),
    }
}

fn render(args: RenderArgs) -> ExitCode {
    let text = match std::fs::read_to_string(&args.deal) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", args.deal.display());
            return ExitCode::from(2);
        }
    };
    let at = args
        .at
        .map_or_else(chrono::Utc::now, |at| at.with_timezone(&chrono::Utc));
    let settings = args.defaults.settings(&args.namespace);
    match timedeal_operator::render::render(&text, at, &settings, &args.deal_namespace) {
        Ok(objects) => {
            print!("{}", timedeal_operator::render::yaml(&objects));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", args.deal.display());
            ExitCode::FAILURE
        }
    }
}

fn serve(args: RunArgs) -> ExitCode {
    // Two TLS crypto back-ends are linked in (the Kubernetes client's and the HTTP client's);
    // rustls needs one chosen for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .json()
        .init();
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "timedeal-operator".into());
        format!("{host}-{}", std::process::id())
    });
    let calendar_replicas = match timedeal_api::calendar::capacity(
        args.calendar_replicas,
        Some(&args.calendar_cpu),
        &args.defaults.storefront_cpu_request,
    ) {
        Ok(capacity) => capacity,
        Err(e) => {
            eprintln!("timedeal-operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = run::Options {
        config: Config {
            settings: args.defaults.settings(&args.namespace),
            operator_namespace: args.namespace.clone(),
            postgres_secret: args.postgres_secret,
            postgres_secret_key: args.postgres_secret_key,
            figures_interval: Duration::from_secs(args.figures_interval),
            final_figures_timeout: Duration::from_secs(args.final_figures_timeout),
            api_timeout: Duration::from_secs(args.api_timeout),
            calendar_replicas,
            hosts: timedeal_api::hosts::HostRules::from_flags(
                args.company_host_suffix,
                args.reserved_hosts,
            ),
            portal_database_role: args.portal_database_role,
            portal_account: PortalAccount {
                namespace: args.namespace.clone(),
                name: args.portal_service_account,
            },
        },
        listen: args.listen,
        leader_election: !args.no_leader_election,
        identity,
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match runtime.block_on(run::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("timedeal-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
