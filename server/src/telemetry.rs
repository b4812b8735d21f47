//! Logging: human-readable by default, JSON for log pipelines.

use tracing_subscriber::EnvFilter;

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,aws_config=warn,aws_smithy_runtime=warn")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // try_init: tests start many apps in one process, and only the first may install a logger.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
