//! Command lines of `gearpump-master` and `gear`. Gearpump spells its flags with one dash
//! (`-ip`, `-port`, `-jar`, `-appid`); both that and GNU `--ip` work.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// `gearpump-master`: one master of a Gearpump HA cluster.
#[derive(Debug, Parser)]
#[command(
    name = "gearpump-master",
    version = crate::wire::PACKAGE_VERSION,
    about = "A master of an Apache Gearpump high-availability cluster (Raft)",
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  gearpump-master -ip node1 -port 3000\n  \
gearpump-master --check-config\n  \
gearpump-master restore --from backup.snap          # every master of a new cluster, stopped\n  \
gearpump-master recover --force-new-cluster          # the survivor of a lost majority, stopped\n\
See docs/OPERATIONS.md for the runbook."
)]
pub struct MasterArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Validate the configuration, print the effective values and where each came from, exit
    #[arg(long)]
    pub check_config: bool,
    #[command(subcommand)]
    pub command: Option<MasterCommand>,
}

/// Which master this is and where its configuration and state are: the same flags for the
/// daemon and for the offline commands.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// gear.conf to read (default: /etc/gearpump/gear.conf when it exists, else built-in defaults)
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This master's host as listed in gearpump.cluster.masters (Gearpump: -ip)
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// This master's port as listed in gearpump.cluster.masters (Gearpump: -port)
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Override gearpump.master.state-dir
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Offline operations on a stopped master's state directory (docs/OPERATIONS.md).
#[derive(Debug, Subcommand)]
pub enum MasterCommand {
    /// Seed an EMPTY state directory from a backup (`gear snapshot save`): run it, with the same
    /// file, on every master of gearpump.cluster.masters, then start them; they form a new
    /// cluster holding the backup's state. Reports referenced jars missing from the jar store.
    /// Exit status: 0 done, 65 damaged backup, 73 state directory not empty, 78 configuration
    Restore {
        /// The backup file
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Disaster recovery after a majority of masters is lost for good: rewrite this STOPPED
    /// master's membership to itself alone, keeping every log entry it has (also entries not
    /// known to be committed). It then starts as a one-master cluster; add fresh masters back
    /// with POST /api/v1.0/master/members or gearpump-setup. Refuses while another master of
    /// the old membership answers, unless --yes-i-know.
    /// Exit status: 0 done, 75 this master runs or another answers, 78 configuration
    Recover {
        /// Required: say that a new one-master cluster is what you want
        #[arg(long, required = true)]
        force_new_cluster: bool,
        /// Go ahead even though other masters of the old membership answer (they then form a
        /// separate cluster: stop them for good)
        #[arg(long)]
        yes_i_know: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// `gear`: Gearpump's command-line client, against any master of the cluster.
#[derive(Debug, Parser)]
#[command(name = "gear", version = crate::wire::PACKAGE_VERSION, about = "Submit, list and kill Gearpump applications; inspect the masters")]
pub struct GearArgs {
    /// Masters to talk to, host:port[,host:port...] (default: gearpump.cluster.masters of gear.conf)
    #[arg(long, short = 'm', value_name = "HOST:PORT,...", global = true)]
    pub master: Option<String>,
    /// gear.conf to read the masters list from
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// Per-request timeout in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 30, global = true)]
    pub timeout: u64,
    /// The cluster CA (PEM): talk https:// and trust only masters with its certificates
    /// (default: ca-file of ~/.config/gearpump/client.conf or /etc/gearpump/client.conf)
    #[arg(long, value_name = "FILE", global = true)]
    pub ca: Option<PathBuf>,
    /// A file holding the bearer token (mode 0600) (default: $GEARPUMP_TOKEN, then client.conf)
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: GearCommand,
}

#[derive(Debug, Subcommand)]
pub enum GearCommand {
    /// Store a jar and register an application: gear app -jar FILE [-namePrefix P] MainClass [args...]
    App {
        /// The application jar
        #[arg(long, value_name = "FILE")]
        jar: PathBuf,
        /// Name the application PREFIX<appId> (Gearpump: -namePrefix)
        #[arg(long, value_name = "PREFIX")]
        name_prefix: Option<String>,
        /// The submitting user (default: $USER)
        #[arg(long)]
        user: Option<String>,
        /// Slots the application takes on a worker (default 1)
        #[arg(long, value_name = "N")]
        slots: Option<u32>,
        /// The application's main class
        main_class: String,
        /// Arguments passed to the application
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List applications
    Info,
    /// Kill an application: gear kill -appid N
    Kill {
        #[arg(long, value_name = "N")]
        appid: u32,
    },
    /// The masters: who leads, term, commit index, lag, health
    Masters,
    /// Every master asked itself: ready, role, term, leader, applied state, version; exits 1
    /// unless all are ready and name one leader in one term (etcdctl endpoint health --cluster)
    Health {
        /// Ask again until healthy, for up to this many seconds
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        wait: u64,
        /// Also require one applied state: every master at the same index with the same hash
        #[arg(long)]
        same_state: bool,
        /// Also require every master to run this package version
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
    },
    /// The workers the leader knows: slots, free slots, attempts they run
    Workers,
    /// The log of an application's attempt, fetched from its worker: gear log -appid N
    Log {
        #[arg(long, value_name = "N")]
        appid: u32,
        /// Which attempt (default: the last)
        #[arg(long, value_name = "N")]
        attempt: Option<u32>,
        /// How many bytes from the end
        #[arg(long, value_name = "BYTES", default_value_t = 65536)]
        tail: u64,
    },
    /// Stop an application's attempt and start a new one (not counted as a failure)
    Restart {
        #[arg(long, value_name = "N")]
        appid: u32,
    },
    /// Backups of the replicated state: gear snapshot save FILE | gear snapshot status FILE
    Snapshot {
        #[command(subcommand)]
        action: SnapshotCommand,
    },
    /// Download an application's jar from the jar store, checked against its SHA-256
    Download {
        /// The jar's name in the store (see `gear info --json`)
        #[arg(long, value_name = "NAME")]
        file: String,
        /// Where to write it
        #[arg(long, short = 'o', value_name = "FILE")]
        output: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a consistent backup of the replicated state (applications, ids, application data,
    /// jar references, membership), read through the leader; needs the admin role. Written
    /// atomically with mode 0600. Jar bytes stay in the jar store
    Save {
        /// Where to write the backup
        file: PathBuf,
    },
    /// Check a backup's checksum and print what it holds (no master needed)
    Status {
        /// The backup file
        file: PathBuf,
    },
}

/// `gearpump-setup`: installs and configures a master cluster over ssh.
#[derive(Debug, Parser)]
#[command(
    name = "gearpump-setup",
    version = crate::wire::PACKAGE_VERSION,
    about = "Install, configure and start a gearpump-master cluster on Debian or RPM hosts over ssh",
    after_help = "Examples:\n  gearpump-setup --masters node1,node2,node3 --nfs filer:/export/gearpump\n  \
gearpump-setup --masters node1,node2,node3,node4,node5 --nfs filer:/export/gearpump   # add two\n  \
gearpump-setup --masters node1,node2,node4,node5 --remove node3 --nfs filer:/export/gearpump\n  \
gearpump-setup --masters node1,node2,node3 --workers node4,node5\n  \
gearpump-setup --masters node1,node2,node3 --dry-run"
)]
pub struct SetupArgs {
    /// Every master node, comma-separated, as the nodes and ssh know them (NAME[,NAME...])
    #[arg(long, value_name = "NAME,...", required = true)]
    pub masters: String,
    /// Take a master out of the running cluster (repeatable); it is stopped and disabled
    #[arg(long, value_name = "NAME")]
    pub remove: Vec<String>,
    /// Worker nodes, comma-separated (a node may also be a master): gearpump-worker is
    /// installed and configured with the masters, started once the masters are READY, and
    /// waited for until the leader lists it alive
    #[arg(long, value_name = "NAME,...")]
    pub workers: Option<String>,
    /// The masters' port (REST and Raft)
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// A package to install (repeatable; each node takes the one for its family and
    /// architecture). Default: target/packages/*.deb and *.rpm
    #[arg(long, value_name = "FILE")]
    pub package: Vec<PathBuf>,
    /// Install gearpump-master (and gearpump-worker on --workers) by name from this signed
    /// package repository instead of copying package files: an APT source (deb822, Signed-By
    /// the repository key) on Debian hosts, a yum/dnf .repo on RPM hosts. scripts/build-repo.sh
    /// makes one (URL/dists/stable for apt, URL/rpm for dnf)
    #[arg(long, value_name = "URL", requires = "repo_key", conflicts_with = "package")]
    pub repo: Option<String>,
    /// The repository's OpenPGP public key, binary or ASCII-armored (gearpump-archive-keyring.gpg
    /// or .asc in the repository's root): apt and dnf refuse the repository unless its
    /// signatures verify with it
    #[arg(long, value_name = "FILE", requires = "repo")]
    pub repo_key: Option<PathBuf>,
    /// Rolling upgrade of the running cluster to the version in --repo or --package: one master
    /// at a time, followers first, the leader last (it hands leadership over as the package
    /// restarts it); each must be back in the quorum, report the new version and have caught
    /// up with the leader before the next. Then gearpump-worker on the --workers nodes, one at a
    /// time, each restarted by its package and registered again (listed alive) before the
    /// next. Stops at the first node that does not come back
    #[arg(long, conflicts_with_all = ["remove", "rotate_certs"])]
    pub upgrade: bool,
    /// Jar store URI written as is: hdfs://namenode:9000/path, hdfs://nameservice/path, or
    /// file:///path for a shared folder already mounted on every node
    #[arg(long, value_name = "URI", conflicts_with = "nfs")]
    pub jar_store: Option<String>,
    /// NFS export for the jar store, SERVER:/export: mounted on every node by a systemd unit
    #[arg(long, value_name = "SERVER:/EXPORT")]
    pub nfs: Option<String>,
    /// Mount options of the NFS jar store
    #[arg(long, value_name = "OPTS", default_value = "hard,noatime", requires = "nfs")]
    pub nfs_options: String,
    /// Where every node mounts the NFS jar store
    #[arg(long, value_name = "DIR", default_value = "/mnt/gearpump-jars", requires = "nfs")]
    pub nfs_mount: PathBuf,
    /// gearpump.master.failover-timeout for every master (200ms to 10m), e.g. 2s
    #[arg(long, value_name = "DURATION")]
    pub failover_timeout: Option<String>,
    /// ssh login user (default: ssh's own, from ~/.ssh/config)
    #[arg(long, value_name = "USER")]
    pub ssh_user: Option<String>,
    /// ssh identity file
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// ssh port (default: ssh's own, from ~/.ssh/config)
    #[arg(long, value_name = "PORT")]
    pub ssh_port: Option<u16>,
    /// ssh configuration file instead of ~/.ssh/config
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Run the commands on the nodes through `sudo -n` (for a non-root login)
    #[arg(long)]
    pub sudo: bool,
    /// Seconds to wait for an ssh connection
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub connect_timeout: u64,
    /// Seconds to wait for every master to be READY with one leader
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    pub timeout: u64,
    /// Print, per node, every command and file it would run or write; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Where the admin's cluster CA, tokens and client.conf are kept (created on the first run,
    /// reused after) (default: ~/.config/gearpump, where gear looks for client.conf)
    #[arg(long, value_name = "DIR")]
    pub pki_dir: Option<PathBuf>,
    /// Issue new node certificates from the cluster CA and restart the masters one at a time
    #[arg(long, conflicts_with = "insecure")]
    pub rotate_certs: bool,
    /// No TLS and no client tokens (NOT recommended: anyone reaching the port may submit jars)
    #[arg(long)]
    pub insecure: bool,
}

/// Gearpump's single-dash long flags and their GNU spelling.
const GEARPUMP_FLAGS: &[(&str, &str)] = &[
    ("-ip", "--ip"),
    ("-port", "--port"),
    ("-conf", "--config"),
    ("-jar", "--jar"),
    ("-namePrefix", "--name-prefix"),
    ("-slots", "--slots"),
    ("-appid", "--appid"),
    ("-attempt", "--attempt"),
    ("-tail", "--tail"),
    ("-master", "--master"),
    ("-json", "--json"),
];

/// Rewrites Gearpump's single-dash flags into GNU form, up to the point where an application's
/// own arguments start (after `gear app ... MainClass`, nothing is touched) or a `--`.
pub fn normalize_gearpump_flags(
    args: impl IntoIterator<Item = String>,
    positionals_before_app_args: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut positionals = 0;
    let mut expecting_value = false;
    let mut passthrough = false;
    for (index, arg) in args.into_iter().enumerate() {
        if index == 0 || passthrough {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        if let Some((_, gnu)) = GEARPUMP_FLAGS.iter().find(|(single, _)| *single == arg) {
            expecting_value = *gnu != "--json";
            out.push((*gnu).to_string());
            continue;
        }
        if expecting_value {
            expecting_value = false;
        } else if arg.starts_with('-') {
            expecting_value = !arg.contains('=') && takes_value(&arg);
        } else if !arg.starts_with('-') {
            positionals += 1;
            if positionals >= positionals_before_app_args {
                passthrough = true;
            }
        }
        out.push(arg);
    }
    out
}

fn takes_value(flag: &str) -> bool {
    matches!(
        flag,
        "-c" | "-m"
            | "-o"
            | "--config"
            | "--ip"
            | "--port"
            | "--state-dir"
            | "--master"
            | "--timeout"
            | "--jar"
            | "--name-prefix"
            | "--user"
            | "--appid"
            | "--file"
            | "--output"
            | "--from"
            | "--ca"
            | "--token-file"
            | "--slots"
            | "--attempt"
            | "--tail"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn master_flags_in_both_spellings() {
        let normalized = normalize_gearpump_flags(words("master -ip node1 -port 3000"), usize::MAX);
        let args = MasterArgs::try_parse_from(normalized).expect("parses");
        assert_eq!((args.node.ip.as_deref(), args.node.port), (Some("node1"), Some(3000)));
        let args = MasterArgs::try_parse_from(words("master --ip node1 --port 3000")).expect("parses");
        assert_eq!(args.node.port, Some(3000));
        assert!(args.command.is_none());
    }

    #[test]
    fn gear_app_leaves_application_arguments_alone() {
        let normalized = normalize_gearpump_flags(
            words("gear app -jar wc.jar -namePrefix wc io.x.WordCount -split 4 -jar keep"),
            2,
        );
        assert_eq!(
            normalized,
            words("gear app --jar wc.jar --name-prefix wc io.x.WordCount -split 4 -jar keep")
        );
        let args = GearArgs::try_parse_from(normalized).expect("parses");
        match args.command {
            GearCommand::App { main_class, args, name_prefix, .. } => {
                assert_eq!(main_class, "io.x.WordCount");
                assert_eq!(args, words("-split 4 -jar keep"));
                assert_eq!(name_prefix.as_deref(), Some("wc"));
            }
            other => panic!("wrong command {other:?}"),
        }
    }

    #[test]
    fn global_short_flags_take_their_value() {
        let normalized = normalize_gearpump_flags(words("gear -m h:1 app -jar x.jar Main -v"), 2);
        assert_eq!(normalized, words("gear -m h:1 app --jar x.jar Main -v"));
    }

    #[test]
    fn global_flags_before_the_verb_take_their_value() {
        // `--token-file FILE` was counted as a positional, so `app -jar` was left unconverted.
        let normalized =
            normalize_gearpump_flags(words("gear --ca ca.pem --token-file t app -jar x.jar Main -v"), 2);
        assert_eq!(normalized, words("gear --ca ca.pem --token-file t app --jar x.jar Main -v"));
        assert!(GearArgs::try_parse_from(normalized).is_ok());
    }

    #[test]
    fn gear_kill_with_single_dash() {
        let args = GearArgs::try_parse_from(normalize_gearpump_flags(words("gear kill -appid 7"), 2))
            .expect("parses");
        assert!(matches!(args.command, GearCommand::Kill { appid: 7 }));
    }

    #[test]
    fn master_subcommands_and_their_flags() {
        let normalized = normalize_gearpump_flags(
            words("master restore --from b.snap -ip node1 -port 3000 --state-dir /s"),
            usize::MAX,
        );
        let args = MasterArgs::try_parse_from(normalized).expect("parses");
        match args.command {
            Some(MasterCommand::Restore { from, node }) => {
                assert_eq!(from, PathBuf::from("b.snap"));
                assert_eq!((node.ip.as_deref(), node.port), (Some("node1"), Some(3000)));
            }
            other => panic!("wrong command {other:?}"),
        }
        let args = MasterArgs::try_parse_from(words("master recover --force-new-cluster")).expect("parses");
        assert!(matches!(args.command, Some(MasterCommand::Recover { yes_i_know: false, .. })));
        assert!(
            MasterArgs::try_parse_from(words("master recover")).is_err(),
            "--force-new-cluster is required"
        );
        assert!(
            MasterArgs::try_parse_from(words("master --check-config recover --force-new-cluster")).is_err()
        );
        let args = MasterArgs::try_parse_from(words("master --check-config -c x.conf")).expect("parses");
        assert!(args.check_config && args.command.is_none());
    }

    #[test]
    fn gear_snapshot_verbs() {
        let args = GearArgs::try_parse_from(normalize_gearpump_flags(words("gear snapshot save b.snap"), 2))
            .expect("parses");
        assert!(matches!(args.command, GearCommand::Snapshot { action: SnapshotCommand::Save { .. } }));
        let args = GearArgs::try_parse_from(words("gear snapshot status b.snap --json")).expect("parses");
        assert!(args.json);
        assert!(matches!(args.command, GearCommand::Snapshot { action: SnapshotCommand::Status { .. } }));
    }

    #[test]
    fn wrong_flags_are_errors() {
        assert!(MasterArgs::try_parse_from(words("master --port notanumber")).is_err());
        assert!(MasterArgs::try_parse_from(words("master --bogus")).is_err());
    }
}

/// `gearpump-worker`: runs applications for the masters (Gearpump's `bin/worker`).
#[derive(Debug, Parser)]
#[command(
    name = "gearpump-worker",
    version = crate::wire::PACKAGE_VERSION,
    about = "A worker of an Apache Gearpump cluster: runs applications as child JVMs"
)]
pub struct WorkerArgs {
    /// gear.conf to read (default: /etc/gearpump/gear.conf when it exists, else built-in defaults)
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override gearpump.worker.state-dir
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Validate the configuration and exit
    #[arg(long)]
    pub check_config: bool,
}
