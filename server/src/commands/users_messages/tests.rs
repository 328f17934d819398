use super::*;
use crate::commands::presence;
use crate::config::Config;
use crate::hub::{ConnInfo, Era, Hub, Outbox};
use crate::storage::Storage;
use crate::tenant::{KeyBox, Tenants};
use std::sync::Arc;

const DEV: DevId = DevId(1);
const USER: UserId = UserId(5);

async fn ctx() -> (tempfile::TempDir, Ctx) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display());
    let storage = Storage::open(&url).await.unwrap();
    storage.migrate().await.unwrap();
    let tenants = Tenants::new(storage, KeyBox::from_bytes(&[7; 32]));
    let ctx = Ctx::new(Arc::new(Config::default()), tenants, Hub::in_process());
    (dir, ctx)
}

async fn queue(ctx: &Ctx, texts: impl IntoIterator<Item = String>) {
    for message in texts {
        let m = QueuedMessage {
            id: 0,
            uuid: uuid::Uuid::now_v7().to_string(),
            event: "e".into(),
            message,
            sent_at: unix_now(),
        };
        let expires = unix_now() + 60;
        ctx.storage
            .enqueue_message(DEV, USER, &m, expires)
            .await
            .unwrap();
    }
}

async fn queued(ctx: &Ctx) -> Vec<String> {
    let rows = ctx
        .storage
        .queued_messages(DEV, USER, unix_now(), 1000)
        .await
        .unwrap();
    rows.into_iter().map(|m| m.message).collect()
}

/// A connection of the user, linked (draining) as the WebSocket door links it.
async fn connect(ctx: &Ctx, conn: u64) -> Outbox {
    let info = ConnInfo {
        conn: ConnId(conn),
        era: Era::from_version((4, 0)),
        user_id: USER,
        uuid: String::new(),
        ip: String::new(),
        user_agent: String::new(),
        origin: String::new(),
        language: String::new(),
        msg_ids: false,
    };
    let (outbox, _rx) = Outbox::new(info, 16);
    presence::connect(ctx, DEV, USER, outbox.clone())
        .await
        .unwrap();
    outbox
}

fn texts(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

/// Collects what it is given, refuses the batch numbered `fail_at`, and can send a message to the user
/// while a given batch is being delivered (a sender racing with the drain).
struct Sink<'a> {
    ctx: &'a Ctx,
    batches: Vec<Vec<Frame>>,
    fail_at: Option<usize>,
    send_during: Option<usize>,
}

impl<'a> Sink<'a> {
    fn new(ctx: &'a Ctx) -> Self {
        Sink {
            ctx,
            batches: Vec::new(),
            fail_at: None,
            send_during: None,
        }
    }

    fn sizes(&self) -> Vec<usize> {
        self.batches.iter().map(Vec::len).collect()
    }

    /// Each delivered message's text, in order, read back from its frame.
    fn texts(&self) -> Vec<String> {
        self.batches
            .iter()
            .flatten()
            .map(|f| match f.get("data") {
                Some(crate::browser::json::Value::Str(text)) => text.clone(),
                other => panic!("a queued message's data is its text, not {other:?}"),
            })
            .collect()
    }
}

impl QueueSink for Sink<'_> {
    type Error = &'static str;

    async fn deliver(&mut self, batch: Vec<Frame>) -> Result<(), &'static str> {
        let n = self.batches.len();
        if self.send_during == Some(n) {
            send(self.ctx, DEV, USER, "e", "late").await.unwrap();
        }
        if self.fail_at == Some(n) {
            return Err("the socket broke");
        }
        self.batches.push(batch);
        Ok(())
    }
}

#[tokio::test]
async fn a_drain_delivers_the_whole_queue_in_order_in_batches_then_the_user_is_ready() {
    let (_dir, ctx) = ctx().await;
    queue(&ctx, texts(0..250)).await;
    let outbox = connect(&ctx, 1).await;
    assert!(!ctx.hub.registry().user_ready(DEV, USER), "draining");
    let mut sink = Sink::new(&ctx);
    drain(&ctx, DEV, USER, outbox.conn(), false, &mut sink)
        .await
        .unwrap();
    assert_eq!(sink.sizes(), vec![100, 100, 50]);
    assert_eq!(sink.texts(), texts(0..250));
    assert!(queued(&ctx).await.is_empty(), "claimed, so gone");
    assert!(ctx.hub.registry().user_ready(DEV, USER));
}

#[tokio::test]
async fn a_batch_the_sink_cannot_deliver_goes_back_into_the_queue() {
    let (_dir, ctx) = ctx().await;
    queue(&ctx, texts(0..150)).await;
    let outbox = connect(&ctx, 1).await;
    let mut sink = Sink::new(&ctx);
    sink.fail_at = Some(1);
    let e = drain(&ctx, DEV, USER, outbox.conn(), false, &mut sink).await;
    assert_eq!(e, Err("the socket broke"));
    assert_eq!(sink.texts(), texts(0..100), "the first batch arrived");
    assert_eq!(
        queued(&ctx).await,
        texts(100..150),
        "the second is queued again"
    );
    assert!(
        !ctx.hub.registry().user_ready(DEV, USER),
        "a failed drain leaves the connection draining: live messages still queue"
    );
    // The next connection gets what the broken one did not.
    presence::disconnect(&ctx, DEV, USER, outbox.conn()).await;
    let outbox = connect(&ctx, 2).await;
    let mut sink = Sink::new(&ctx);
    drain(&ctx, DEV, USER, outbox.conn(), false, &mut sink)
        .await
        .unwrap();
    assert_eq!(sink.texts(), texts(100..150));
}

#[tokio::test]
async fn a_batch_put_back_stays_ahead_of_the_messages_never_claimed() {
    let (_dir, ctx) = ctx().await;
    queue(&ctx, texts(0..250)).await;
    let outbox = connect(&ctx, 1).await;
    let mut sink = Sink::new(&ctx);
    sink.fail_at = Some(1);
    let e = drain(&ctx, DEV, USER, outbox.conn(), false, &mut sink).await;
    assert_eq!(e, Err("the socket broke"));
    assert_eq!(
        queued(&ctx).await,
        texts(100..250),
        "the failed batch is back at the head of the queue, before the 50 that were never claimed"
    );
    presence::disconnect(&ctx, DEV, USER, outbox.conn()).await;
    let outbox = connect(&ctx, 2).await;
    let mut sink = Sink::new(&ctx);
    drain(&ctx, DEV, USER, outbox.conn(), false, &mut sink)
        .await
        .unwrap();
    assert_eq!(sink.texts(), texts(100..250), "in the order they were sent");
}

#[tokio::test]
async fn a_message_sent_during_the_drain_is_queued_behind_it_and_delivered_once() {
    let (_dir, ctx) = ctx().await;
    queue(&ctx, texts(0..3)).await;
    let outbox = connect(&ctx, 1).await;
    let mut sink = Sink::new(&ctx);
    sink.send_during = Some(0);
    drain(&ctx, DEV, USER, outbox.conn(), false, &mut sink)
        .await
        .unwrap();
    let mut want = texts(0..3);
    want.push("late".into());
    assert_eq!(sink.texts(), want, "read by one more pass, after the rest");
    assert_eq!(sink.sizes(), vec![3, 1]);
    assert!(queued(&ctx).await.is_empty());
    assert!(ctx.hub.registry().user_ready(DEV, USER));
}
