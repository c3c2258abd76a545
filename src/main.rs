use clap::Parser;

use atlas_encryption_operator::{config::Config, operator, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(config.log_format, &config.log_level)?;
    operator::run(config).await
}
