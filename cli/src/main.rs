//! `rapport`: the command line of the Rapport CRM. It parses, calls
//! `rapport_node::Repo`, and prints: tables for people, JSON for scripts.

/// `writeln!` into a `String`, which cannot fail.
macro_rules! outln {
    ($out:expr) => {{
        $out.push('\n');
    }};
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

mod add;
mod agenda;
mod bench;
mod client;
mod commands;
mod daemon;
mod discovery;
mod import;
mod integrations;
mod membership;
mod merge;
mod output;
mod privacy;
mod recovery;
mod relay;
mod reports;
mod schema;

use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc rather than the system allocator: sled copies and frees tree
/// nodes on every write and Automerge allocates per operation, and with
/// glibc's malloc that churn took two fifths of an import's time
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser, Subcommand};

/// Rapport: a CRM with no central server.
///
/// Records live on this machine in a data directory; every change is signed
/// by this device's key.
#[derive(Debug, Parser)]
#[command(name = "rapport", version, propagate_version = true)]
pub struct Cli {
    /// Data directory [default: the platform's data directory, e.g. ~/.local/share/rapport]
    #[arg(long, global = true, env = "RAPPORT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory and device key, or update your name and organisation.
    Init {
        /// Your name, shown as the author of your changes.
        #[arg(long)]
        name: Option<String>,
        /// Your organisation.
        #[arg(long)]
        org: Option<String>,
        /// Your country (DE, US, GB, ...): phone numbers written without
        /// `+` are read as its numbers when looking for duplicates.
        #[arg(long, value_name = "CC")]
        region: Option<String>,
    },
    /// Show who this device is and where its data lives.
    Whoami,
    /// Run the node in the foreground: sync with peers, serve the local API and the web UI.
    Up(UpArgs),
    /// Open the running node's web UI in a browser, logged in (a one-time link).
    Open {
        /// Only print the login link (for another browser, or over ssh).
        #[arg(long)]
        print: bool,
    },
    /// The node, its peers, and each shared space's sync state.
    Status,
    /// An always-on relay node for admins: stores and forwards shared spaces.
    #[command(subcommand)]
    Relay(RelayCmd),
    /// Shared spaces: create, invite, join, list.
    #[command(subcommand)]
    Space(SpaceCmd),
    /// Companies (accounts).
    #[command(subcommand)]
    Company(CompanyCmd),
    /// People (contacts).
    #[command(subcommand)]
    Person(PersonCmd),
    /// Deals in the sales pipeline.
    #[command(subcommand)]
    Deal(DealCmd),
    /// Calls, emails, meetings, notes and tasks.
    #[command(subcommand)]
    Activity(ActivityCmd),
    /// Tasks (activities of type task).
    #[command(subcommand)]
    Task(TaskCmd),
    /// Service tickets.
    #[command(subcommand)]
    Ticket(TicketCmd),
    /// Marketing campaigns.
    #[command(subcommand)]
    Campaign(CampaignCmd),
    /// What you sell: name, SKU, unit price, category.
    #[command(subcommand)]
    Product(ProductCmd),
    /// A deal's lines: product, quantity, unit price, discount. A deal
    /// with lines has their total as its amount, unless set by hand.
    #[command(subcommand, name = "line-item")]
    LineItem(LineItemCmd),
    /// A person's consent (or objection) to a purpose: email, phone, post, events or
    /// profiling. The newest record of a purpose counts; campaigns check it.
    #[command(subcommand)]
    Consent(ConsentCmd),
    /// Add a record of any kind, also one your space's admins added:
    /// `rapport add contract "Acme support 2027" --set ends=2027-03-31 --space Joint`.
    Add {
        /// company, person, deal, activity, ticket, campaign, product, line_item, or a custom kind
        kind: String,
        /// The record's name (title; an activity's type)
        title: Option<String>,
        #[command(flatten)]
        extra: Extra,
    },
    /// List records of one kind, optionally filtered.
    List {
        /// company, person, deal, activity, ticket or campaign
        kind: String,
        /// Keep records whose FIELD equals VALUE (lists: contain it; references: by name or
        /// id). Other comparisons: FIELD!=V (not), FIELD>=V and FIELD<=V (numbers, money,
        /// dates by value), FIELD^=V (begins with), FIELD~=V (contains); repeat to combine.
        #[arg(long = "where", value_name = "FIELD=VALUE")]
        filters: Vec<String>,
        /// List deleted records instead.
        #[arg(long)]
        deleted: bool,
        /// Sort by this field (`-FIELD`: descending) [default: oldest first]
        #[arg(long, value_name = "FIELD", allow_hyphen_values = true)]
        sort: Option<String>,
        /// Show at most this many records.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// The columns to show, comma-separated (custom fields too) [default: the kind's].
        #[arg(long, value_name = "FIELDS")]
        columns: Vec<String>,
    },
    /// Find records by name, email, phone, domain or tag, as you type it.
    Search {
        /// Words each of which begins a term ("ac co" finds "Acme Corp").
        query: String,
        /// Most results to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show one record with its related records.
    Show {
        /// An id, a unique id prefix, or a name.
        reference: String,
    },
    /// Change fields of a record.
    Edit {
        reference: String,
        /// Set a field (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        sets: Vec<String>,
        /// Clear a field (repeatable).
        #[arg(long = "unset", value_name = "FIELD")]
        unsets: Vec<String>,
    },
    /// Delete a record (a signed tombstone: restorable, history kept).
    Delete { reference: String },
    /// Bring back a deleted record; or, given a `rapport backup` file, make a new data
    /// directory from it (`rapport restore FILE --data-dir DIR`).
    Restore {
        /// A record (id, prefix or name), or a backup file.
        reference: String,
    },
    /// Write a backup of this node (its journal, device key and profile) to one file, also
    /// while the node runs. The file holds the device's secret key: keep it safe.
    Backup {
        /// The backup file to write (replaced only once the new one is complete).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Rebuild the store from the journal (the node must be stopped); the old store is
    /// moved aside, never deleted.
    Repair {
        /// Also rewrite the journal without what the store no longer holds.
        #[arg(long)]
        compact: bool,
    },
    /// A record's history (who changed what, when) and its activities, newest first.
    Timeline { reference: String },
    /// Membership changes and refused changes of a shared space, with reasons and authors.
    Audit { space: String },
    /// Deals by stage: count, total and weighted total per currency; every pipeline, or one.
    Pipeline {
        /// Only this pipeline (its name, e.g. renewals) [default: every one; with --json, sales].
        #[arg(long)]
        name: Option<String>,
    },
    /// Your meetings, calls and tasks of today (or --week, or some --days), in your time zone;
    /// overdue tasks first.
    Agenda(agenda::AgendaArgs),
    /// Calendar feeds for calendar apps (`calendar feed create NAME`), and moving a meeting
    /// (`calendar move`).
    #[command(subcommand)]
    Calendar(agenda::CalendarCmd),
    /// A person's data-protection requests: `privacy export PERSON --out DIR`.
    #[command(subcommand)]
    Privacy(privacy::PrivacyCmd),
    /// Reports from the records on this node: win-rate, forecast, abc, rfm, churn, service,
    /// campaigns, cross-sell (`rapport report abc --csv > abc.csv`).
    Report(reports::ReportArgs),
    /// Exchange rates reports convert amounts at (`rates set USD=0.92 --base EUR`,
    /// `rates show`, `rates clear`).
    #[command(subcommand)]
    Rates(reports::RatesCmd),
    /// Bring records in from a CSV file (Excel, Outlook, Google Contacts, HubSpot,
    /// Salesforce, ...), matched to those you have; `import list`, `import undo ID`.
    Import(import::ImportArgs),
    /// Export records as JSON, CSV (one kind per file, imports back), or as Automerge
    /// documents any Automerge implementation reads.
    Export {
        /// Only this kind.
        kind: Option<String>,
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
        /// Write files into this directory (required for --format automerge).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Records that are likely the same customer, with a score and the reasons.
    Duplicates {
        /// Only this kind [default: people and companies].
        kind: Option<String>,
    },
    /// Merge duplicates into the record kept: lists united, references moved to it, the
    /// others redirect to it; `merge list`, `merge undo ID`.
    Merge(merge::MergeArgs),
    /// The fields of a record kind, with their types and help (a space's custom ones too).
    Fields {
        kind: String,
        /// Only this space's fields (name or id) [default: every space's].
        #[arg(long, value_name = "SPACE")]
        space: Option<String>,
    },
    /// Shape the records: custom fields and kinds, labels, hidden fields (`schema show`,
    /// `schema field add KIND NAME --type T`, `schema kind add NAME`).
    #[command(subcommand)]
    Schema(schema::SchemaCmd),
    /// Tokens for the HTTP API (docs/api.md).
    #[command(subcommand)]
    Token(integrations::TokenCmd),
    /// Webhooks: signed POSTs to a URL when records change (docs/api.md).
    #[command(subcommand)]
    Webhook(integrations::WebhookCmd),
    /// Measure the store, or sync between two nodes (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Write throughput, disk use, memory and read latency of the store.
    Store {
        /// How many person records to create.
        #[arg(long, default_value_t = 10_000)]
        records: usize,
        /// Where to create the throw-away store [default: a temporary directory].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Two nodes on loopback sharing a space: initial sync and catch-up.
    Sync {
        /// Records in the shared space.
        #[arg(long, default_value_t = 10_000)]
        records: usize,
        /// Records changed on one side before the catch-up.
        #[arg(long, default_value_t = 10)]
        changed: usize,
        /// Also measure catching up the naive way: one Automerge sync
        /// session per record.
        #[arg(long)]
        naive: bool,
    },
    /// The web UI's instant search at N records: index build time and memory, and query
    /// latency (p50/p95) in the index and through the UI's HTTP endpoint.
    Search {
        /// Store sizes to measure, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        records: Vec<usize>,
    },
    /// Every report (`rapport report`) over 100,000 people, 20,000 companies and 50,000 deals
    /// at 100 %: p50 and slowest of five runs each, and reading the records alone.
    Reports {
        /// Sizes to measure, in percent of that store, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,100")]
        scale: Vec<usize>,
    },
    /// `rapport import` of an Outlook-style CSV of N people at N/10 companies into an empty
    /// node, the same file again, a dry run, a CSV export and the undo: seconds, rows/s, RSS.
    Import {
        /// Sizes to measure, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        records: Vec<usize>,
    },
    /// One relay process serving N nodes that come and go: convergence time, relay RSS, CPU, bytes.
    Relay {
        /// Nodes sharing the space.
        #[arg(long, default_value_t = 20)]
        nodes: usize,
        /// Changes each node writes.
        #[arg(long, default_value_t = 500)]
        changes: usize,
    },
    /// One `rapport up` node writing at full speed while serving P peers that write too:
    /// write throughput, convergence time, the node's RSS over time, CPU, bytes.
    Serve {
        /// Peers sharing the space with the served node, all online.
        #[arg(long, default_value_t = 20)]
        peers: usize,
        /// Changes the served node writes (each peer writes a tenth as many).
        #[arg(long, default_value_t = 2000)]
        writes: usize,
    },
}

/// How a foreground node (`up`, `relay run`) meets its peers.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Address to listen on for peers (repeatable) [default: all interfaces, a random port]
    #[arg(long, value_name = "IP:PORT")]
    pub bind: Vec<std::net::SocketAddr>,
    /// Relays for reaching peers behind NAT and on other networks: default (iroh's public
    /// relays), none (LAN and direct addresses only), or your own relay's URL.
    #[arg(
        long,
        env = "RAPPORT_RELAY",
        default_value = "default",
        value_name = "default|none|URL"
    )]
    pub relay: rapport_node::net::RelayChoice,
    /// Where to publish this node's addresses and look up members' by node id: default
    /// (number 0's public servers; only the relay is published there), none, or your own
    /// pkarr server's URL (`rapport relay run --discovery-server`; IP addresses too).
    #[arg(
        long,
        env = "RAPPORT_DISCOVERY",
        default_value = "default",
        value_name = "default|none|URL"
    )]
    pub discovery: rapport_node::net::DiscoveryChoice,
    /// Do not look for peers on the local network (mDNS).
    #[arg(long)]
    pub no_mdns: bool,
    /// Where the local API listens (loopback only unless you say otherwise).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "IP:PORT")]
    pub api: std::net::SocketAddr,
    /// Seconds between catch-up rounds with every member.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub sync_interval: u64,
    /// Serve Prometheus metrics at http://IP:PORT/metrics.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Answer only scrapes that send `Authorization: Bearer TOKEN`, TOKEN being this file's
    /// content (surrounding whitespace ignored).
    #[arg(long, value_name = "FILE", requires = "metrics")]
    pub metrics_token_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Load demo records (companies, people, deals, ...) into an empty store.
    #[arg(long)]
    pub demo: bool,
    /// Where the web UI listens [default: 127.0.0.1:7470, or another port if taken].
    /// Another host's address serves it to the network (login still needed;
    /// put TLS in front beyond a trusted LAN).
    #[arg(long, value_name = "IP:PORT", conflicts_with = "no_ui")]
    pub ui_bind: Option<std::net::SocketAddr>,
    /// Do not serve the web UI.
    #[arg(long)]
    pub no_ui: bool,
    /// Where the HTTP API for integrations listens [default: 127.0.0.1:7471, or another port
    /// if taken]. Requests need a token (`rapport token create`); put TLS in front beyond a
    /// trusted LAN.
    #[arg(long, value_name = "IP:PORT")]
    pub api_bind: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Debug, Subcommand)]
pub enum RelayCmd {
    /// Run this data directory as a relay in the foreground: it keeps every signed change of the
    /// spaces it joins (with the relay role) and hands them to members that connect later.
    Run(Box<RelayArgs>),
    /// Spaces served, members seen, peers, changes stored, traffic, disk use, uptime, limits.
    Status,
}

#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub net: NetArgs,
    /// Most bytes of signed changes kept per space (k, M, G); more is refused until raised.
    #[arg(long, default_value = "1G", value_parser = rapport_node::limits::parse_size)]
    pub quota: u64,
    /// Most changes taken from one peer per minute; more waits for a later session.
    #[arg(long, default_value_t = 60_000, value_name = "CHANGES")]
    pub rate: u32,
    /// Also run an iroh relay server here (plain HTTP; put TLS in front on the internet),
    /// for nodes behind NAT: start them with `--relay http://HOST:PORT`.
    #[arg(long, value_name = "IP:PORT")]
    pub iroh_relay: Option<std::net::SocketAddr>,
    /// Also run a discovery server here (pkarr over plain HTTP), where nodes publish their
    /// addresses and find members by node id: start them with
    /// `--discovery http://HOST:PORT/pkarr`.
    #[arg(long, value_name = "IP:PORT")]
    pub discovery_server: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum SpaceCmd {
    /// Create a shared space (you are its first admin).
    Create { name: String },
    /// The shared spaces this node belongs to.
    List,
    /// Print a one-time ticket that lets another node join (admins; needs the running node).
    Invite {
        /// The space (name or id).
        space: String,
        /// What the new member may do: admin, writer, reader, relay or privacy (reads, exports and erases a person's data, writes no record).
        #[arg(long, default_value = "writer")]
        role: rapport_model::Role,
        /// Certify the joiner as belonging to this organisation (else its own claim is recorded).
        #[arg(long)]
        org: Option<String>,
        /// Hours until the ticket expires.
        #[arg(long = "ttl", default_value_t = 24.0, value_name = "HOURS")]
        ttl_hours: f64,
    },
    /// Who is in a space: organisation, user, device, role, since when; and who was removed.
    Members { space: String },
    /// Remove a member: a device (id or prefix), a user (all their devices) or an organisation (admins).
    Remove {
        space: String,
        /// A device id or prefix, a user name, or an organisation name.
        member: String,
    },
    /// Join a space with a ticket from one of its members (needs the running node).
    Join { ticket: String },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Json,
    Csv,
    /// vCard 4.0: people, for phones and mail programs.
    Vcard,
    /// iCalendar: meetings and tasks, for calendars.
    Ics,
    Automerge,
}

/// Options every `add` takes: the space, and any field by name.
#[derive(Debug, Clone, Args)]
pub struct Extra {
    /// The space to create it in (name or id) [default: your private space]
    #[arg(long, value_name = "SPACE")]
    pub space: Option<String>,
    /// Set any field by name (repeatable), e.g. --set owner=Dana
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub sets: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum CompanyCmd {
    /// Add a company.
    Add(add::AddArgs<0>),
}

#[derive(Debug, Subcommand)]
pub enum PersonCmd {
    /// Add a person.
    Add(add::AddArgs<1>),
}

#[derive(Debug, Subcommand)]
pub enum DealCmd {
    /// Add a deal.
    Add(add::AddArgs<2>),
}

#[derive(Debug, Subcommand)]
pub enum ActivityCmd {
    /// Log a call, email, meeting or note, or add a task.
    Add(add::AddArgs<3>),
}

#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Mark a task done.
    Done { reference: String },
}

#[derive(Debug, Subcommand)]
pub enum TicketCmd {
    /// Open a ticket.
    Add(add::AddArgs<4>),
}

#[derive(Debug, Subcommand)]
pub enum CampaignCmd {
    /// Add a campaign.
    Add(add::AddArgs<5>),
    /// Add people to a campaign's members. Everyone needs the consent the campaign's
    /// channel needs (an email campaign: consent to email); without it nothing is added,
    /// unless --skip-without-consent leaves them out and lists them.
    Enroll {
        /// The campaign (name, id or id prefix).
        campaign: String,
        /// The people (names, e-mails, ids).
        #[arg(required = true)]
        people: Vec<String>,
        /// Add those who consented and list the others, instead of refusing.
        #[arg(long)]
        skip_without_consent: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsentCmd {
    /// Record consent, a withdrawal or an objection:
    /// `rapport consent add "Ann Lee" --purpose email --source form`.
    Add(add::AddArgs<8>),
}

#[derive(Debug, Subcommand)]
pub enum ProductCmd {
    /// Add a product.
    Add(add::AddArgs<6>),
}

#[derive(Debug, Subcommand)]
pub enum LineItemCmd {
    /// Add a line to a deal: `rapport line-item add Rollout --product Widget --quantity 3`.
    Add(add::AddArgs<7>),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return help_or_exit(e),
    };
    init_tracing();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    if std::env::var_os(bench::PEAK_RSS_ENV).is_some()
        && let Some(kib) = bench::peak_rss_kib()
    {
        eprintln!("peak_rss_kib={kib}");
    }
    ExitCode::from(code)
}

/// Prints clap's help or error; `rapport KIND add --help` also lists the
/// kind's custom fields, which only the data directory knows.
fn help_or_exit(e: clap::Error) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let kind = add::help_asked(&args);
    if e.kind() != clap::error::ErrorKind::DisplayHelp || kind.is_none() {
        e.exit()
    }
    let _ = e.print();
    let given = args
        .iter()
        .position(|a| a == "--data-dir")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--data-dir=")))
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("RAPPORT_DATA_DIR").map(PathBuf::from));
    let fields = kind.zip(commands::data_dir(given).ok());
    if let Some(more) = fields.and_then(|(kind, dir)| add::custom_fields_help(kind, &dir)) {
        println!("\n{more}");
    }
    ExitCode::SUCCESS
}

/// Runs `up` as the node, forwards other commands to a running node, or
/// runs them directly on the data directory.
fn run(cli: Cli) -> anyhow::Result<u8> {
    let dir = commands::data_dir(cli.data_dir.clone())?;
    match cli.command {
        Command::Open { print } => {
            commands::open(&dir, print, cli.json)?;
            return Ok(0);
        }
        Command::Up(args) => {
            daemon::up(&dir, daemon::Mode::Node(args), cli.json)?;
            return Ok(0);
        }
        Command::Relay(RelayCmd::Run(args)) => {
            daemon::up(&dir, daemon::Mode::Relay(*args), cli.json)?;
            return Ok(0);
        }
        _ => {}
    }
    let mut out = String::new();
    let result = match commands::plan_of(&cli.command)? {
        Some(planned) => {
            let mut exec = commands::Executor::new(&dir, planned.create);
            commands::run(planned, &mut exec, cli.json, &mut out)
        }
        None => local(cli, &dir, &mut out),
    };
    print!("{out}");
    result.map(|()| 0)
}

/// The commands the CLI does itself, without an operation of the node.
fn local(cli: Cli, dir: &std::path::Path, out: &mut String) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Repair { compact } => recovery::repair(out, dir, compact, json),
        Command::Restore { reference } => {
            recovery::restore(out, dir, std::path::Path::new(&reference), json)
        }
        Command::Bench(cmd) => bench::run_command(cmd, out, json),
        Command::Privacy(privacy::PrivacyCmd::Compact) => privacy::compact(out, dir, json),
        Command::Import(args) => import::run(args, dir, json, out),
        other => anyhow::bail!("`{other:?}` is not a local command"),
    }
}

/// Logs go to stderr: Rapport's own at `RAPPORT_LOG` (default warn), the
/// libraries' at error only, so that an offline node stays quiet.
fn init_tracing() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let level = std::env::var("RAPPORT_LOG")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::WARN);
    let filter = Targets::new()
        .with_default(LevelFilter::ERROR)
        .with_target("rapport", level)
        .with_target("rapport_node", level)
        .with_target("rapport_sync", level)
        // sled reports what it cannot read as errors of its own; the store
        // turns them into one message that says what to do.
        .with_target("sled", LevelFilter::OFF)
        // iroh's relay transport logs "relay_recv_channel closed" as an
        // error on every clean shutdown of a node that uses a relay; how
        // members are reached shows in `rapport status` instead.
        .with_target("iroh::socket::transports::relay", LevelFilter::OFF)
        .with_target("rapport_store", level);
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
}
