//! Delivery beside the writer (issue 17): a committed publish is handed to one delivery task, in commit
//! order, and the writer goes on to its next batch. A history append whose delivery does not end (standing
//! for a pipe with a great many subscribers) is held inside its `finish`; meanwhile a queued private
//! message is committed and acknowledged, and a CometQL publish to another history pipe is committed (its
//! row is in the database) but neither acknowledged nor delivered: deliveries keep commit order. Once the
//! held delivery ends, the publish is acknowledged and delivered, after it. Both backends.

use std::sync::{mpsc, Arc, Mutex};

use halley::ids::DevId;
use halley::storage::{
    DurablePosition, HistoryCommit, HistoryRow, HistoryWrite, StorageError, StoredUsage,
};
use halley_tests::browser::{wait_subscribers, Browser};
use halley_tests::cometql::insert_sql;
use halley_tests::frames::json;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::{eventually, WAIT};
use halley_tests::{on_both_backends, Backend, TestServer};
use tokio::sync::oneshot;

const HELD: &str = "deliver_held";
const OTHER: &str = "deliver_other";

/// An append whose delivery waits for the test's word; it notes each delivery it makes.
struct Held {
    delivered: Arc<Mutex<Vec<String>>>,
    started: Option<oneshot::Sender<()>>,
    gate: Mutex<mpsc::Receiver<()>>,
}

impl HistoryCommit for Held {
    fn admit(&mut self, _change: StoredUsage) -> bool {
        true
    }

    fn finish(
        self: Box<Self>,
        row: HistoryRow,
        result: Result<Option<DurablePosition>, StorageError>,
    ) {
        result.expect("the held append commits");
        let Held {
            delivered,
            started,
            gate,
        } = *self;
        if let Some(s) = started {
            let _ = s.send(());
        }
        // Off the runtime's worker: the delivery task is held, the rest of the server is not.
        tokio::task::block_in_place(|| {
            let _ = gate.lock().unwrap().recv();
        });
        delivered.lock().unwrap().push(row.message);
    }
}

async fn stored(server: &TestServer, dev_id: u64, pipe: &str) -> Vec<String> {
    let pool = server.database().await;
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT message FROM pipe_history WHERE dev_id = $1 AND pipe = $2 ORDER BY pos",
    )
    .bind(dev_id as i64)
    .bind(pipe)
    .fetch_all(&pool)
    .await
    .expect("read pipe_history");
    pool.close().await;
    rows.into_iter().map(|(m,)| m).collect()
}

async fn a_held_delivery_does_not_hold_up_commits(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("deliver@example.com").await;
    let mut q = RawMysql::login(&server, &tenant).await;
    q.query(&format!(
        "INSERT INTO pipes_settings (name, length) VALUES ('{OTHER}', 10)"
    ))
    .await
    .assert_ok();
    let mut b = Browser::connect(&server, tenant.dev_id, 0, "", "deliverwatch").await;
    b.send(&format!("subscription\n{OTHER}")).await;
    wait_subscribers(&server, tenant.dev_id, OTHER, 1).await;

    let delivered = Arc::new(Mutex::new(Vec::new()));
    let (started_tx, started) = oneshot::channel();
    let (open, gate) = mpsc::channel();
    server
        .ctx()
        .storage
        .append(HistoryWrite {
            dev_id: DevId(tenant.dev_id),
            row: HistoryRow {
                pipe: HELD.into(),
                uuid: "held-1".into(),
                event: "e".into(),
                message: "held".into(),
                user_id: 0,
                sent_at: 1,
                pos: None,
                sender: None,
            },
            keep: 10,
            epoch: None,
            commit: Box::new(Held {
                delivered: delivered.clone(),
                started: Some(started_tx),
                gate: Mutex::new(gate),
            }),
        })
        .await
        .expect("handed to the writer");
    started.await.expect("the held delivery began");

    let mut publisher = RawMysql::login(&server, &tenant).await;
    let publish = tokio::spawn(async move {
        let reply = publisher.query(&insert_sql(OTHER, "e", "after")).await;
        (publisher, reply)
    });
    // The writer is not held: a queued private message commits and is acknowledged...
    q.query("INSERT INTO users_messages (id, event, message) VALUES (7, 'e', 'queued')")
        .await
        .assert_ok();
    // ...and so does the publish to the other pipe, whose delivery (and answer) waits its turn.
    eventually(WAIT, || async {
        let rows = stored(&server, tenant.dev_id, OTHER).await;
        anyhow::ensure!(rows == ["after"], "{OTHER} holds {rows:?}");
        Ok(())
    })
    .await
    .unwrap();
    assert!(
        !publish.is_finished(),
        "{backend:?}: the publish was answered before the delivery committed before it"
    );
    assert!(delivered.lock().unwrap().is_empty());

    open.send(()).expect("the held delivery waits");
    let (publisher, reply) = publish.await.expect("the publisher");
    reply.assert_ok();
    let v = json(&b.recv().await);
    assert_eq!(
        (v["pipe"].as_str(), v["data"].as_str()),
        (Some(OTHER), Some("after")),
        "{v}"
    );
    assert_eq!(
        *delivered.lock().unwrap(),
        ["held"],
        "delivered in commit order: the held append first"
    );
    drop(publisher);
    b.close().await;
    server.stop().await;
}

on_both_backends!(a_held_delivery_does_not_hold_up_commits);
