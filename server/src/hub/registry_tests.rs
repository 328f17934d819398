//! The registry's tests: subscriptions, fan-out order, slow consumers, positions and windows.

use super::*;
use crate::hub::{Encoded, Era, Outbox};
use bytes::Bytes;

struct Fixed(Bytes);
impl Encoded for Fixed {
    fn wire(&self, _: Era) -> Bytes {
        self.0.clone()
    }
}

fn pipe(s: &str) -> PipeName {
    PipeName::parse(s).unwrap()
}

pub(crate) fn outbox(conn: u64, capacity: usize) -> (Outbox, crate::hub::OutboxRx) {
    Outbox::new(
        crate::hub::ConnInfo {
            conn: ConnId(conn),
            era: Era::Modern,
            user_id: crate::ids::UserId(0),
            uuid: String::new(),
            ip: String::new(),
            user_agent: String::new(),
            origin: String::new(),
            language: String::new(),
            msg_ids: false,
        },
        capacity,
    )
}

#[tokio::test]
async fn delivers_same_bytes_to_each_subscriber_of_the_tenant_only() {
    let r = Registry::default();
    let (a, mut ra) = outbox(1, 4);
    let (b, mut rb) = outbox(2, 4);
    let (c, mut rc) = outbox(3, 4);
    r.subscribe(DevId(1), &pipe("chat"), a);
    r.subscribe(DevId(1), &pipe("chat"), b);
    r.subscribe(DevId(2), &pipe("chat"), c);
    let frame = Bytes::from_static(b"hello");
    let p = Publication {
        dev_id: DevId(1),
        pipe: pipe("chat"),
        frame: Arc::new(Fixed(frame.clone())),
        except: Some(ConnId(2)),
        position: None,
        presence: false,
        socket: None,
    };
    assert_eq!(r.deliver(&p), 1);
    let got = ra.try_recv().unwrap();
    assert_eq!(got.as_ptr(), frame.as_ptr(), "shared, not copied");
    assert!(rb.try_recv().is_none(), "the sender is excluded");
    assert!(rc.try_recv().is_none(), "another tenant never sees it");
    r.unsubscribe(DevId(1), &pipe("chat"), ConnId(1));
    r.unsubscribe(DevId(1), &pipe("chat"), ConnId(2));
    assert_eq!(r.subscribers(DevId(1), &pipe("chat")), 0);
}

#[tokio::test]
async fn a_full_outbox_closes_that_connection_only() {
    let r = Registry::default();
    let (a, _ra) = outbox(1, 1);
    let (b, mut rb) = outbox(2, 8);
    r.subscribe(DevId(1), &pipe("chat"), a.clone());
    r.subscribe(DevId(1), &pipe("chat"), b.clone());
    let p = Publication {
        dev_id: DevId(1),
        pipe: pipe("chat"),
        frame: Arc::new(Fixed(Bytes::from_static(b"x"))),
        except: None,
        position: None,
        presence: false,
        socket: None,
    };
    r.deliver(&p);
    r.deliver(&p);
    assert_eq!(
        a.close_reason(),
        Some(crate::hub::CloseReason::SlowConsumer)
    );
    assert_eq!(b.close_reason(), None);
    assert_eq!(rb.try_recv().unwrap(), Bytes::from_static(b"x"));
    assert_eq!(rb.try_recv().unwrap(), Bytes::from_static(b"x"));
    assert_eq!(r.stats.slow_consumers_dropped.load(Ordering::Relaxed), 1);
    // Frames it misses while closing do not count it again.
    r.deliver(&p);
    r.deliver(&p);
    assert_eq!(r.stats.slow_consumers_dropped.load(Ordering::Relaxed), 1);
}

#[test]
fn concurrent_publishers_to_a_big_pipe_reach_everyone_in_one_order() {
    let r = Arc::new(Registry::default());
    let n = crate::hub::fanout::PARALLEL_MIN as u64 + 44;
    let mut rxs = Vec::new();
    for conn in 0..n {
        let (o, rx) = outbox(conn, 1024);
        r.subscribe(DevId(1), &pipe("big"), o);
        rxs.push(rx);
    }
    let publishers: Vec<_> = (0..2u8)
        .map(|who| {
            let r = r.clone();
            std::thread::spawn(move || {
                for i in 0..100u8 {
                    r.deliver(&Publication {
                        dev_id: DevId(1),
                        pipe: pipe("big"),
                        frame: Arc::new(Fixed(Bytes::from(vec![who, i]))),
                        except: None,
                        position: None,
                        presence: false,
                        socket: None,
                    });
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    let first: Vec<Bytes> = std::iter::from_fn(|| rxs[0].try_recv()).collect();
    assert_eq!(first.len(), 200);
    for (i, rx) in rxs.iter_mut().enumerate().skip(1) {
        let got: Vec<Bytes> = std::iter::from_fn(|| rx.try_recv()).collect();
        assert!(got == first, "subscriber {i} saw another order");
    }
}

fn message(n: u64) -> Publication {
    let frame = crate::browser::frames::pipe_message("web_p", "e", &n.to_string(), 1);
    Publication {
        dev_id: DevId(1),
        pipe: pipe("web_p"),
        frame: crate::hub::outgoing::shared(frame),
        except: None,
        position: None,
        presence: false,
        socket: None,
    }
}

fn texts(rx: &mut crate::hub::OutboxRx) -> Vec<String> {
    std::iter::from_fn(|| rx.try_recv())
        .map(|b| String::from_utf8_lossy(&b[2..]).into_owned())
        .collect()
}

fn subscribed(text: &str) -> Option<(String, u64, bool)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    (v["event"] == "subscribed").then(|| {
        let d = &v["data"];
        let epoch = d["epoch"].as_str().unwrap().to_string();
        (
            epoch,
            d["offset"].as_u64().unwrap(),
            d["recovered"].as_bool().unwrap(),
        )
    })
}

fn offset(text: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v["offset"].as_u64()
}

#[tokio::test]
async fn positions_go_to_those_who_asked_and_legacy_bytes_stay() {
    let r = Registry::default();
    let (legacy, mut rl) = outbox(1, 64);
    let (pos, mut rp) = outbox(2, 64);
    r.subscribe(DevId(1), &pipe("web_p"), legacy);
    r.deliver(&message(0));
    assert_eq!(
        texts(&mut rl),
        [r#"{"data":"0","event":"e","message_send_time":1,"pipe":"web_p"}"#]
    );
    assert!(!r.subscribe_positioned(DevId(1), &pipe("web_p"), pos, None, None));
    let got = texts(&mut rp);
    let (epoch, top, recovered) = subscribed(&got[0]).unwrap();
    assert_eq!((got.len(), top, recovered), (1, 0, false));
    r.deliver(&message(1));
    r.deliver(&message(2));
    assert_eq!(
        texts(&mut rl),
        [
            r#"{"data":"1","event":"e","message_send_time":1,"pipe":"web_p"}"#,
            r#"{"data":"2","event":"e","message_send_time":1,"pipe":"web_p"}"#
        ],
        "legacy frames are byte-identical"
    );
    assert_eq!(
        texts(&mut rp),
        [
            r#"{"data":"1","event":"e","message_send_time":1,"offset":1,"pipe":"web_p"}"#,
            r#"{"data":"2","event":"e","message_send_time":1,"offset":2,"pipe":"web_p"}"#
        ]
    );
    // Gone, three more published, back with its position: the three, then subscribed.
    r.unsubscribe(DevId(1), &pipe("web_p"), ConnId(2));
    for n in 3..=5 {
        r.deliver(&message(n));
    }
    let (pos, mut rp) = outbox(3, 64);
    assert!(r.subscribe_positioned(DevId(1), &pipe("web_p"), pos, Some((&epoch, 2)), None));
    let got = texts(&mut rp);
    let offsets: Vec<Option<u64>> = got.iter().map(|t| offset(t)).collect();
    assert_eq!(offsets, [Some(3), Some(4), Some(5), None]);
    assert_eq!(subscribed(&got[3]), Some((epoch.clone(), 5, true)));
    // A wrong epoch: nothing replayed.
    let (pos, mut rp) = outbox(4, 64);
    assert!(!r.subscribe_positioned(DevId(1), &pipe("web_p"), pos, Some(("0", 2)), None));
    let got = texts(&mut rp);
    assert_eq!(got.len(), 1);
    assert_eq!(subscribed(&got[0]), Some((epoch, 5, false)));
}

#[test]
fn a_stream_nobody_listens_to_is_dropped_and_the_next_has_a_new_epoch() {
    let r = Registry::with_windows(
        Stats::default(),
        super::WindowLimits {
            max_age: std::time::Duration::ZERO,
            ..Default::default()
        },
    );
    let (pos, mut rp) = outbox(1, 64);
    r.subscribe_positioned(DevId(1), &pipe("web_p"), pos, None, None);
    let (first, _, _) = subscribed(&texts(&mut rp)[0]).unwrap();
    r.deliver(&message(1));
    r.unsubscribe(DevId(1), &pipe("web_p"), ConnId(1));
    assert_eq!(r.total_subscriptions(), 0);
    std::thread::sleep(std::time::Duration::from_millis(2));
    r.sweep_windows();
    assert_eq!(r.window_bytes(), 0);
    assert!(
        lock(r.shard(DevId(1), &pipe("web_p"))).is_empty(),
        "entry gone"
    );
    let (pos, mut rp) = outbox(2, 64);
    assert!(!r.subscribe_positioned(DevId(1), &pipe("web_p"), pos, Some((&first, 1)), None));
    let (second, top, _) = subscribed(&texts(&mut rp)[0]).unwrap();
    assert_ne!(first, second);
    assert_eq!(top, 0);
}

#[test]
fn a_resubscribe_racing_publishes_gets_each_exactly_once() {
    let r = Arc::new(Registry::default());
    let (first, mut r0) = outbox(1, 1024);
    r.subscribe_positioned(DevId(1), &pipe("web_p"), first, None, None);
    let (epoch, _, _) = subscribed(&texts(&mut r0)[0]).unwrap();
    let publisher = {
        let r = r.clone();
        std::thread::spawn(move || {
            for n in 1..=60 {
                r.deliver(&message(n));
            }
        })
    };
    // Resubscribe repeatedly on fresh connections with the last offset seen; every message must come
    // once, either replayed or live.
    let mut seen: Vec<u64> = Vec::new();
    let mut rx = r0;
    let mut conn = 2;
    while seen.last() != Some(&60) {
        let got = texts(&mut rx);
        for t in &got {
            if let Some(o) = offset(t) {
                seen.push(o);
            }
        }
        if conn < 40 {
            r.unsubscribe(DevId(1), &pipe("web_p"), ConnId(conn - 1));
            let (o, next) = outbox(conn, 1024);
            let last = seen.last().copied().unwrap_or(0);
            assert!(r.subscribe_positioned(
                DevId(1),
                &pipe("web_p"),
                o,
                Some((&epoch, last)),
                None
            ));
            rx = next;
            conn += 1;
        }
        std::thread::yield_now();
    }
    publisher.join().unwrap();
    seen.extend(texts(&mut rx).iter().filter_map(|t| offset(t)));
    assert_eq!(seen, (1..=60).collect::<Vec<u64>>());
}

#[test]
fn a_big_pipe_with_positions_keeps_one_order_for_everyone() {
    let r = Arc::new(Registry::default());
    let n = PARALLEL_MIN as u64 + 20;
    let mut rxs = Vec::new();
    for conn in 0..n {
        let (o, rx) = outbox(conn, 1024);
        r.subscribe(DevId(1), &pipe("web_p"), o);
        rxs.push(rx);
    }
    let publishers: Vec<_> = (0..2u64)
        .map(|who| {
            let r = r.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    r.deliver(&message(who * 1000 + i));
                }
            })
        })
        .collect();
    // Positions asked for while the publishes go on: from then on, offsets, in the plain order.
    let (pos, mut rp) = outbox(n, 1024);
    r.subscribe_positioned(DevId(1), &pipe("web_p"), pos, None, None);
    for p in publishers {
        p.join().unwrap();
    }
    let first = texts(&mut rxs[0]);
    assert_eq!(first.len(), 200);
    for (i, rx) in rxs.iter_mut().enumerate().skip(1) {
        assert!(texts(rx) == first, "subscriber {i} saw another order");
    }
    let got = texts(&mut rp);
    let (_, top, _) = subscribed(&got[0]).unwrap();
    let offsets: Vec<u64> = got[1..].iter().map(|t| offset(t).unwrap()).collect();
    assert_eq!(
        offsets,
        (top + 1..=top + offsets.len() as u64).collect::<Vec<_>>()
    );
    // The same messages as the plain subscribers' last ones, in the same order.
    let data = |t: &String| serde_json::from_str::<serde_json::Value>(t).unwrap()["data"].clone();
    let tail: Vec<_> = first[first.len() - offsets.len()..]
        .iter()
        .map(data)
        .collect();
    assert_eq!(got[1..].iter().map(data).collect::<Vec<_>>(), tail);
}

fn stored(n: u64, epoch: &str) -> Publication {
    Publication {
        position: Some((epoch.into(), n)),
        ..message(n)
    }
}

fn durable(epoch: &str, top: u64, replay: Option<Vec<u64>>) -> Option<Durable> {
    Some(Durable {
        epoch: epoch.into(),
        top,
        replay: replay.map(|ns| {
            ns.iter()
                .map(|n| message(*n).frame.with_offset(*n).unwrap())
                .collect()
        }),
    })
}

#[tokio::test]
async fn a_durable_stream_takes_stored_offsets_and_tells_gaps() {
    let r = Registry::default();
    let (a, mut ra) = outbox(1, 64);
    // The history holds 4..=5 of epoch "E" (the window nothing): replayed from it.
    let d = durable("E", 5, Some(vec![4, 5]));
    assert!(r.subscribe_positioned(DevId(1), &pipe("web_p"), a, Some(("E", 3)), d));
    let got = texts(&mut ra);
    let offsets: Vec<Option<u64>> = got.iter().map(|t| offset(t)).collect();
    assert_eq!(offsets, [Some(4), Some(5), None]);
    assert_eq!(subscribed(&got[2]), Some(("E".into(), 5, true)));
    // Stored offsets are used as given; a presence frame takes none.
    r.deliver(&stored(6, "E"));
    r.deliver(&Publication {
        presence: true,
        socket: None,
        ..message(100)
    });
    let got = texts(&mut ra);
    assert_eq!(
        got.iter().map(|t| offset(t)).collect::<Vec<_>>(),
        [Some(6), None]
    );
    // The history made anew (another epoch), then a hole in the numbering: `gap` instead of the frame.
    let gap = r#"{"data":{"pipe":"web_p"},"event":"gap","pipe":"web_p"}"#;
    r.deliver(&stored(1, "F"));
    r.deliver(&stored(2, "F"));
    r.deliver(&stored(9, "F"));
    assert_eq!(
        texts(&mut ra),
        [
            gap,
            r#"{"data":"2","event":"e","message_send_time":1,"offset":2,"pipe":"web_p"}"#,
            gap
        ]
    );
    // The history switched off: numbering goes back to memory, in a new epoch, told as a gap.
    r.deliver(&message(10));
    assert_eq!(texts(&mut ra), [gap]);
    let (b, mut rb) = outbox(2, 64);
    assert!(!r.subscribe_positioned(DevId(1), &pipe("web_p"), b, Some(("F", 9)), None));
    let (epoch, top, _) = subscribed(&texts(&mut rb)[0]).unwrap();
    assert_ne!(epoch, "F");
    assert_eq!(top, 1);
}
