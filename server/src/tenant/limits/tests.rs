use super::*;

fn small() -> LimitsConfig {
    LimitsConfig {
        publishes_per_sec: 1,
        publish_burst: 3,
        websocket_connections_per_tenant: 2,
        new_connections_per_ip_per_sec: 1,
        new_connections_per_ip_burst: 2,
        failed_logins_per_ip_per_min: 2,
        ..LimitsConfig::default()
    }
}

#[test]
fn publishes_refused_past_the_burst_per_tenant() {
    let l = Limits::new(small(), Stats::default());
    for _ in 0..3 {
        l.publish(DevId(1)).unwrap();
    }
    let e = l.publish(DevId(1)).unwrap_err();
    assert_eq!(e.limit, Limit::Publishes);
    assert!(e.retry_after > Duration::ZERO);
    l.publish(DevId(2))
        .expect("another tenant has its own budget");
    assert_eq!(l.stats.limit_refusals.load(Ordering::Relaxed), 1);
}

#[test]
fn a_statement_spends_all_its_publishes_or_none() {
    let l = Limits::new(small(), Stats::default());
    // Burst 3: four at once can never pass, and spend nothing.
    assert_eq!(
        l.publish_n(DevId(1), 4).unwrap_err().limit,
        Limit::PublishBurst
    );
    l.publish_n(DevId(1), 2).unwrap();
    let e = l.publish_n(DevId(1), 2).unwrap_err();
    assert_eq!(e.limit, Limit::Publishes);
    assert!(e.retry_after > Duration::ZERO);
    // The refused statement spent nothing: the last publish of the burst is still there.
    l.publish_n(DevId(1), 1).unwrap();
    l.publish_n(DevId(1), 0).unwrap();
    assert!(l.publish(DevId(1)).is_err());
}

#[test]
fn overrides_apply_to_one_tenant() {
    let l = Limits::new(small(), Stats::default());
    l.set_override(
        DevId(1),
        TenantOverride {
            publish_burst: Some(5),
            websocket_connections: Some(10),
            ..Default::default()
        },
    );
    for _ in 0..5 {
        l.publish(DevId(1)).unwrap();
    }
    assert!(l.publish(DevId(1)).is_err());
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    assert!(l.websocket_connect(DevId(1), ip, 5).is_ok());
    let e = l.websocket_connect(DevId(2), ip, 2).unwrap_err();
    assert_eq!(e.limit, Limit::TenantConnections);
}

#[test]
fn websockets_are_counted_per_tenant_and_address_while_open() {
    let l = Limits::new(
        LimitsConfig {
            websocket_connections_per_ip_per_tenant: 2,
            ..LimitsConfig::default()
        },
        Stats::default(),
    );
    let a: IpAddr = "2001:db8:0:1::1".parse().unwrap();
    let same_64: IpAddr = "2001:db8:0:1::2".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    let first = l.websocket_connect(DevId(1), a, 0).unwrap();
    let _second = l.websocket_connect(DevId(1), same_64, 1).unwrap();
    let e = l.websocket_connect(DevId(1), a, 2).unwrap_err();
    assert_eq!(e.limit, Limit::IpTenantConnections);
    let _other_address = l.websocket_connect(DevId(1), b, 2).unwrap();
    let _other_tenant = l.websocket_connect(DevId(2), a, 0).unwrap();
    drop(first);
    let _again = l.websocket_connect(DevId(1), a, 2).unwrap();
    drop((_again, _second, _other_address, _other_tenant));
    assert!(
        lock(&l.websockets_per_ip).is_empty(),
        "no entry outlives its connections"
    );
}

#[test]
fn a_refused_websocket_leaves_no_entry() {
    // A cap of 0 is refused by `Config::validate`; here it makes every connect a refusal.
    let l = Limits::new(
        LimitsConfig {
            websocket_connections_per_ip_per_tenant: 0,
            ..LimitsConfig::default()
        },
        Stats::default(),
    );
    for i in 0..100u8 {
        let ip = IpAddr::from([10, 0, 1, i]);
        let e = l.websocket_connect(DevId(u64::from(i)), ip, 0).unwrap_err();
        assert_eq!(e.limit, Limit::IpTenantConnections);
    }
    assert!(lock(&l.websockets_per_ip).is_empty());
}

#[test]
fn require_tls_is_per_tenant_and_can_be_turned_off() {
    let l = Limits::new(small(), Stats::default());
    assert!(!l.requires_tls(DevId(1)));
    l.set_require_tls(DevId(1), true);
    assert!(l.requires_tls(DevId(1)));
    assert!(!l.requires_tls(DevId(2)));
    l.set_require_tls(DevId(1), false);
    assert!(!l.requires_tls(DevId(1)));
}

#[test]
fn queue_ttl_override_applies_to_one_tenant() {
    let l = Limits::new(small(), Stats::default());
    l.set_override(
        DevId(1),
        TenantOverride {
            queue_ttl_secs: Some(600),
            ..Default::default()
        },
    );
    assert_eq!(l.queue_ttl_secs(DevId(1), 120), 600);
    assert_eq!(l.queue_ttl_secs(DevId(2), 120), 120);
}

#[test]
fn a_window_override_replaces_what_it_sets() {
    let l = Limits::new(small(), Stats::default());
    l.set_override(
        DevId(1),
        TenantOverride {
            window_messages: Some(5),
            ..Default::default()
        },
    );
    assert_eq!(l.window(DevId(1), 100, 120), (5, 120));
    assert_eq!(l.window(DevId(2), 100, 120), (100, 120));
}

#[test]
fn failed_logins_block_the_address_only() {
    let l = Limits::new(small(), Stats::default());
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    l.login_failed(a);
    l.login_failed(a);
    assert!(!l.login_blocked(a));
    l.login_failed(a);
    assert!(l.login_blocked(a));
    assert!(!l.login_blocked(b));
    l.sweep();
    assert!(l.login_blocked(a), "still within the window");
}

#[test]
fn an_ipv6_64_shares_one_budget() {
    let l = Limits::new(small(), Stats::default());
    let a: IpAddr = "2001:db8:0:1::1".parse().unwrap();
    let b: IpAddr = "2001:db8:0:1::2".parse().unwrap();
    let other: IpAddr = "2001:db8:0:2::1".parse().unwrap();
    l.new_connection(a).unwrap();
    l.new_connection(b).unwrap();
    let e = l.new_connection(a).unwrap_err();
    assert_eq!(e.limit, Limit::IpConnections);
    assert!(l.new_connection(b).is_err(), "same /64, same budget");
    l.new_connection(other)
        .expect("another /64 has its own budget");
    for _ in 0..3 {
        l.login_failed(a);
    }
    assert!(l.login_blocked(b), "the block covers the whole /64");
    assert!(!l.login_blocked(other));
}
