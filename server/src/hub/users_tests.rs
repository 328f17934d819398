use super::*;
use crate::hub::registry::tests::outbox;

#[tokio::test]
async fn first_and_last_connection_and_the_cap() {
    let r = Registry::default();
    let (dev, user) = (DevId(1), UserId(5));
    let (a, _ra) = outbox(1, 4);
    let (b, _rb) = outbox(2, 4);
    assert_eq!(r.link_user(dev, user, a.clone(), || ()), Ok(true));
    assert_eq!(r.link_user(dev, user, b.clone(), || ()), Ok(false));
    assert!(r.user_online(dev, user));
    assert!(!r.unlink_user(dev, user, ConnId(1), || ()));
    assert!(r.unlink_user(dev, user, ConnId(2), || ()));
    assert!(!r.user_online(dev, user));
    let keep: Vec<_> = (0..MAX_CONNECTIONS_PER_USER as u64)
        .map(|i| {
            let (o, rx) = outbox(10 + i, 1);
            r.link_user(dev, user, o, || ()).unwrap();
            rx
        })
        .collect();
    let (extra, _rx) = outbox(99, 1);
    assert_eq!(
        r.link_user(dev, user, extra, || ()),
        Err(LinkError::TooManyConnections)
    );
    assert_eq!(r.close_user(dev, user), MAX_CONNECTIONS_PER_USER);
    drop(keep);
}

#[tokio::test]
async fn nothing_is_delivered_while_every_connection_drains() {
    let r = Registry::default();
    let (dev, user) = (DevId(1), UserId(5));
    let frame = message(1);
    let (a, mut ra) = outbox(1, 4);
    let (b, mut rb) = outbox(2, 4);
    r.link_user(dev, user, a, || ()).unwrap();
    assert!(r.user_online(dev, user) && !r.user_ready(dev, user));
    assert_eq!(r.send_private(dev, user, &frame), 0, "goes to the queue");
    assert!(!r.queued(dev, user), "the drain delivers it");
    assert!(r.drained(dev, user, ConnId(1)), "read the queue again");
    assert!(!r.user_ready(dev, user), "still draining meanwhile");
    assert!(!r.queued(dev, user), "queued during the second pass");
    assert!(r.drained(dev, user, ConnId(1)), "and a third");
    assert!(
        !r.drained(dev, user, ConnId(1)),
        "a pass with nothing queued"
    );
    assert!(r.user_ready(dev, user));
    assert!(r.queued(dev, user), "its sender delivers it");
    // A second connection drains behind a ready one: it gets live messages after its queue.
    r.link_user(dev, user, b, || ()).unwrap();
    assert_eq!(r.send_private(dev, user, &frame), 2);
    assert!(
        !r.drained(dev, user, ConnId(2)),
        "nothing was queued meanwhile"
    );
    assert!(ra.try_recv().is_some() && rb.try_recv().is_some());
    assert!(!r.unlink_user(dev, user, ConnId(1), || ()));
    assert!(r.user_ready(dev, user), "the one left is past its drain");
}

fn message(n: u64) -> PrivateMessage {
    PrivateMessage::new(format!("id{n}"), frames::user_online(n))
}

/// The JSON of a small server frame (a 2-byte header).
fn text(frame: bytes::Bytes) -> String {
    String::from_utf8_lossy(&frame[2..]).into_owned()
}

/// Legacy connections get the frame of old, those that asked for ids get it with its id; the window
/// keeps what was sent, for a connection that comes back with the last id it processed.
#[tokio::test]
async fn ids_for_those_that_asked_and_the_window_resumes_after_an_id() {
    let r = Registry::default();
    let (dev, user) = (DevId(1), UserId(5));
    let (plain, mut rp) = outbox(1, 8);
    let mut info = plain.info().clone();
    info.conn = ConnId(2);
    info.msg_ids = true;
    let (ids, mut ri) = Outbox::new(info, 8);
    for (o, conn) in [(plain, 1), (ids, 2)] {
        r.link_user(dev, user, o, || ()).unwrap();
        assert!(!r.drained(dev, user, ConnId(conn)));
    }
    for n in 1..=3 {
        assert_eq!(r.send_private(dev, user, &message(n)), 2);
    }
    assert_eq!(
        text(rp.try_recv().unwrap()),
        r#"{"data":"online","event":"online","pipe":"user_status_1"}"#
    );
    assert_eq!(
        text(ri.try_recv().unwrap()),
        r#"{"data":"online","event":"online","id":"id1","pipe":"user_status_1"}"#
    );
    let after = |id: &str| r.resume_private(dev, user, id).map(|frames| frames.len());
    assert_eq!(after("id1"), Some(2));
    assert_eq!(after("id3"), Some(0), "the newest: nothing missed");
    assert_eq!(after("id9"), None, "unknown: nothing replayed");
    assert_eq!(
        r.resume_private(dev, UserId(6), "id1").map(|f| f.len()),
        None
    );
}

/// A user whose connection is stuck in a write (its outbox held, as by a publisher writing to its
/// socket in place) holds up the messages to that user only: another user of the same shard gets
/// theirs meanwhile. Pushing while holding the map's lock would make the second send wait for the
/// first, stuck one.
#[test]
fn a_stuck_connection_does_not_hold_up_other_users() {
    let r = Arc::new(Registry::new(crate::stats::Stats::default()));
    let dev = DevId(1);
    let stuck = UserId(1);
    let other = (2..)
        .map(UserId)
        .find(|u| std::ptr::eq(r.users.shard(&(dev, *u)), r.users.shard(&(dev, stuck))))
        .unwrap();
    let (a, _ra) = outbox(1, 8);
    let (b, mut rb) = outbox(2, 8);
    for (user, o, conn) in [(stuck, a.clone(), 1), (other, b, 2)] {
        r.link_user(dev, user, o, || ()).unwrap();
        assert!(!r.drained(dev, user, ConnId(conn)));
    }
    let writing = a.busy();
    let to_stuck = {
        let r = r.clone();
        std::thread::spawn(move || r.send_private(dev, stuck, &message(1)))
    };
    // Let that send reach the stuck outbox (and, were it held, the map's lock).
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (done, sent) = std::sync::mpsc::channel();
    {
        let r = r.clone();
        std::thread::spawn(move || done.send(r.send_private(dev, other, &message(2))));
    }
    let got = sent.recv_timeout(std::time::Duration::from_secs(5));
    drop(writing);
    assert_eq!(got, Ok(1), "the other user's message went out meanwhile");
    assert!(rb.try_recv().is_some());
    assert_eq!(
        to_stuck.join().unwrap(),
        1,
        "and the stuck one's once it is free"
    );
}

/// Concurrent senders to a user with several connections: every connection gets the messages in the
/// same order (the user's turn), as when the map's lock was held across the pushes.
#[test]
fn every_connection_of_a_user_gets_one_order() {
    let r = Arc::new(Registry::new(crate::stats::Stats::default()));
    let (dev, user) = (DevId(1), UserId(5));
    let mut rxs = Vec::new();
    for conn in 1..=3 {
        let (o, rx) = outbox(conn, 1 << 16);
        r.link_user(dev, user, o, || ()).unwrap();
        assert!(!r.drained(dev, user, ConnId(conn)));
        rxs.push(rx);
    }
    let senders: Vec<_> = (0..3u64)
        .map(|who| {
            let r = r.clone();
            std::thread::spawn(move || {
                for i in 0..5_000 {
                    assert_eq!(r.send_private(dev, user, &message(who * 10_000 + i)), 3);
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let first: Vec<_> = std::iter::from_fn(|| rxs[0].try_recv()).collect();
    assert_eq!(first.len(), 15_000);
    for rx in &mut rxs[1..] {
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv()).collect();
        assert!(got == first, "another order");
    }
}

/// Announcements are made after the map's lock is released; a user's online and offline still go out
/// in the order their connections came and went, however the threads race.
#[test]
fn presence_announcements_keep_their_order() {
    let r = Arc::new(Registry::new(crate::stats::Stats::default()));
    let (dev, user) = (DevId(1), UserId(5));
    let said = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (r, said) = (r.clone(), said.clone());
            std::thread::spawn(move || {
                for i in 0..5_000 {
                    let conn = t * 100_000 + i;
                    let (o, _rx) = outbox(conn, 1);
                    let on = || lock(&said).push(true);
                    r.link_user(dev, user, o, on).unwrap();
                    let off = || lock(&said).push(false);
                    r.unlink_user(dev, user, ConnId(conn), off);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let said = lock(&said);
    assert!(said.len() >= 2 && said.len() % 2 == 0);
    for (i, online) in said.iter().enumerate() {
        assert_eq!(*online, i % 2 == 0, "announcement {i} out of order");
    }
}
