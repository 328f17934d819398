//! Halley's integration tests, as one test binary: a module per suite (the real clients, comet-server
//! compatibility, limits, isolation, the dashboard, the red-team hardening), each with its own file and,
//! where it grew large, its own folder. One binary links the whole server once instead of once per suite;
//! a suite is still chosen by its module name: `tests/run.sh -p halley-tests --test it hardening_quota`.
//! The helpers they share are the `halley_tests` library (`tests/support`).

mod cluster_broker;
mod cluster_faults;
mod cluster_joins;
mod cluster_limits;
mod cluster_private;
mod cluster_revoke;
mod compat_auth;
mod compat_cometql_statements;
mod compat_cometql_tables;
mod compat_cometql_user_tables;
mod compat_queue_presence;
mod compat_races;
mod compat_restart;
mod compat_websocket;
mod core_clients;
mod core_fanout;
mod core_isolation;
mod core_malformed;
mod core_roundtrip;
mod dashboard_api;
mod dashboard_sessions;
mod dashboard_signup;
mod docs_links;
mod durable_drain;
mod durable_kill;
mod durable_poison;
mod durable_stall;
mod durable_trim;
mod hardening_accept;
mod hardening_auth;
mod hardening_browser;
mod hardening_injection;
mod hardening_quota;
mod hardening_results;
mod http_publish;
mod isolation_browser;
mod isolation_cometql;
mod limits_connections;
mod limits_per_connection;
mod limits_publish;
mod limits_slow_consumers;
mod limits_unknown_tenants;
mod origins_self;
mod private_recovery;
mod proxies;
mod recovery;
mod recovery_durable;
mod recovery_property;
mod recovery_tenant_window;
mod tls_cometql;
mod tls_https;
