//! The `smartlb` binary: command line, logging, signals. Everything else lives in the
//! library crates; see the `smartlb` crate.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// A smart HTTP load balancer.
#[derive(Debug, Parser)]
#[command(name = "smartlb", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        /// Configuration file (default: $SMARTLB_CONFIG, else ./smartlb.toml).
        #[arg(short, long, env = "SMARTLB_CONFIG", default_value = "smartlb.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file: prints `ok`, or every error found (exit 2).
    Check {
        /// Configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Run the embedded demo: demo backends, the proxy and a load generator, with a live view.
    Demo {
        /// Stop after this long ("20s", "2m"); default: run until Ctrl-C.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Print plain frames instead of redrawing the terminal.
        #[arg(long)]
        plain: bool,
    },
    /// Run the deterministic traffic simulator and print a comparison table.
    Simulate {
        /// Scenario: heterogeneous, degrading, crash-recover, surge, stalls, antagonist or all.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Algorithms to compare, comma-separated (default: round-robin, least-requests,
        /// p2c-ewma, adaptive).
        #[arg(long, value_delimiter = ',')]
        algorithms: Vec<String>,
        /// Seed of the random streams: the same seed gives the same numbers.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Average over this many seeds, from --seed on.
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        /// Output format: table or json.
        #[arg(long, default_value = "table")]
        format: String,
        /// Also write a self-contained HTML report with charts to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Simulated length of each scenario ("10m"); default: the scenario's own.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
    },
    /// Serve one demo backend until killed (for tests and scripts/failover).
    #[command(hide = true)]
    DemoBackend {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Name sent in the `x-backend` header.
        #[arg(long, default_value = "backend")]
        name: String,
        /// Latency added to every request ("2ms").
        #[arg(long, value_parser = parse_duration)]
        latency: Option<Duration>,
        /// Probability of answering 500/503 (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
        /// Read control commands from standard input; stop at its end.
        #[arg(long)]
        control: bool,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    smartlb::config::parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match smartlb::config::load_file(&config) {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(2)
            }
        },
        Command::Run { config: path } => {
            let source = path.to_string_lossy().into_owned();
            if source.starts_with("etcd://") {
                let runtime = match smartlb::runtime::build(0) {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        eprintln!("smartlb: cannot start the runtime: {error}");
                        return ExitCode::from(1);
                    }
                };
                // Logging from the environment until the configuration is read.
                let _ = smartlb::logging::init(&smartlb::config::LogConfig::default());
                return runtime.block_on(async {
                    match smartlb::run_etcd(&source, smartlb::runtime::shutdown_signal()).await {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(error @ smartlb::EtcdConfigError::Invalid(_)) => {
                            eprintln!("smartlb: {error}");
                            ExitCode::from(2)
                        }
                        Err(error) => {
                            eprintln!("smartlb: {}", smartlb::error_chain(&error));
                            ExitCode::from(1)
                        }
                    }
                });
            }
            let config = match smartlb::config::load_file(&path) {
                Ok(config) => config,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(2);
                }
            };
            if let Err(error) = smartlb::logging::init(&config.log) {
                eprintln!("smartlb: {error}");
                return ExitCode::from(2);
            }
            let runtime = match smartlb::runtime::build(config.server.workers) {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("smartlb: cannot start the runtime: {error}");
                    return ExitCode::from(1);
                }
            };
            runtime.block_on(async {
                match smartlb::run_file(&config, &path, smartlb::runtime::shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => {
                        eprintln!("smartlb: {}", smartlb::error_chain(&error));
                        ExitCode::from(1)
                    }
                }
            })
        }
        Command::Simulate {
            scenario,
            algorithms,
            seed,
            seeds,
            format,
            out,
            duration,
        } => {
            let args = smartlb_sim::cli::SimulateArgs {
                scenario,
                algorithms,
                seed,
                seeds,
                format,
                out,
                duration,
            };
            match smartlb_sim::cli::simulate(&args) {
                Ok(output) => {
                    print!("{}", output.stdout);
                    if let Some(path) = &args.out {
                        eprintln!("wrote {}", path.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("smartlb simulate: {error}");
                    ExitCode::from(error.exit_code())
                }
            }
        }
        Command::DemoBackend {
            listen,
            name,
            latency,
            error_rate,
            control,
        } => {
            let runtime = match smartlb::runtime::build(1) {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("smartlb: cannot start the runtime: {error}");
                    return ExitCode::from(1);
                }
            };
            let options = smartlb::demo::BackendProcessOptions {
                listen,
                name,
                latency: latency.unwrap_or_default(),
                error_rate,
                control,
            };
            runtime.block_on(async {
                match smartlb::demo::serve_backend(options, smartlb::runtime::shutdown_signal())
                    .await
                {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => {
                        eprintln!("smartlb demo-backend: {}", smartlb::error_chain(&*error));
                        ExitCode::from(1)
                    }
                }
            })
        }
        Command::Demo { duration, plain } => {
            let runtime = match smartlb::runtime::build(0) {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("smartlb: cannot start the runtime: {error}");
                    return ExitCode::from(1);
                }
            };
            let options = smartlb::demo::DemoOptions {
                duration,
                plain,
                ..smartlb::demo::DemoOptions::default()
            };
            runtime.block_on(async {
                match smartlb::demo::run(options, smartlb::runtime::shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => {
                        eprintln!("smartlb demo: {}", smartlb::error_chain(&*error));
                        ExitCode::from(1)
                    }
                }
            })
        }
    }
}
