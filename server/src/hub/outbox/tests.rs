use super::*;
use crate::hub::registry::tests::outbox;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (server, client)
}

/// Flushes until everything is written, as the socket task does.
async fn flush(rx: &OutboxRx) {
    std::future::poll_fn(|cx| match rx.poll_flush(cx) {
        Ok(Flush::Done) => Poll::Ready(()),
        Ok(Flush::Blocked { .. }) => Poll::Pending,
        Err(e) => panic!("flush failed: {e}"),
    })
    .await
}

#[test]
fn bounded_fifo_then_gone() {
    let (o, mut rx) = outbox(1, 2);
    assert_eq!(o.push(&Bytes::from_static(b"a")), Pushed::Accepted);
    assert_eq!(o.push(&Bytes::from_static(b"b")), Pushed::Accepted);
    assert_eq!(o.push(&Bytes::from_static(b"c")), Pushed::Overflowed);
    assert_eq!(o.close_reason(), Some(CloseReason::SlowConsumer));
    assert_eq!(
        o.push(&Bytes::from_static(b"d")),
        Pushed::Dropped,
        "counted once"
    );
    assert_eq!(rx.try_recv().as_deref(), Some(&b"a"[..]));
    assert_eq!(rx.try_recv().as_deref(), Some(&b"b"[..]));
    assert_eq!(rx.try_recv(), None);
    drop(rx);
    assert_eq!(o.push(&Bytes::from_static(b"e")), Pushed::Dropped);
}

#[test]
fn the_backlog_counts_queued_bytes_of_every_frame() {
    let (o, mut rx) = outbox(1, 4);
    assert_eq!(rx.backlog(), 0);
    o.push(&Bytes::from_static(b"abc"));
    rx.send(Bytes::from_static(b"answer"));
    o.push_many(&[&Bytes::from_static(b"de"), &Bytes::from_static(b"f")]);
    assert_eq!(rx.backlog(), 12, "publishers' frames and the task's own");
    rx.try_recv();
    assert_eq!(rx.backlog(), 9);
    drop(rx);
    assert_eq!(o.0.lock().bytes, 0, "freed with the frames");
}

#[test]
fn the_first_close_reason_wins() {
    let (o, rx) = outbox(1, 2);
    assert!(o.close(CloseReason::Kicked));
    assert!(!o.close(CloseReason::Shutdown));
    assert_eq!(rx.closing(), Some(CloseReason::Kicked));
    // The task's own frames (its close frame) still go out once closing; publishers' do not.
    rx.send(Bytes::from_static(b"bye"));
    assert_eq!(o.push(&Bytes::from_static(b"x")), Pushed::Dropped);
}

#[tokio::test]
async fn frames_queued_before_the_socket_go_first_then_in_place() {
    let (server, mut client) = pair().await;
    let (o, rx) = outbox(1, 8);
    o.push(&Bytes::from_static(b"one "));
    o.push(&Bytes::from_static(b"two "));
    rx.attach(Box::new(server));
    // Something is waiting, so this one queues behind it rather than overtaking it.
    o.push(&Bytes::from_static(b"three "));
    flush(&rx).await;
    o.push(&Bytes::from_static(b"four"));
    let mut got = vec![0; 18];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(got, b"one two three four");
}

/// Frame `i` of a late-reading client's stream: 4 KB, numbered.
fn numbered(i: u32) -> Bytes {
    Bytes::from(format!("{i:08}").repeat(512))
}

/// Runs `publish` on another thread against an outbox whose client reads only while it runs (far more
/// than the socket buffers take: most of it queues, some of it partly written), then checks that the
/// client got frames 0..2000, whole and in order.
async fn late_reader_gets_everything(publish: impl FnOnce(&Outbox) + Send + 'static) {
    let (server, mut client) = pair().await;
    let (o, rx) = outbox(1, 1 << 20);
    rx.attach(Box::new(server));
    let publisher = std::thread::spawn(move || {
        publish(&o);
        o
    });
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        while got.len() < 2000 * 4096 {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    let _o = publisher.join().unwrap();
    tokio::time::timeout(Duration::from_secs(20), flush(&rx))
        .await
        .expect("flushed");
    let got = reader.await.unwrap();
    let want: Vec<u8> = (0..2000).flat_map(|i| numbered(i).to_vec()).collect();
    assert!(got == want, "every frame, whole and in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_late_gets_everything_in_order() {
    late_reader_gets_everything(|o| {
        for i in 0..2000 {
            assert_eq!(o.push(&numbered(i)), Pushed::Accepted);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_together_arrive_whole_and_in_order() {
    late_reader_gets_everything(|o| {
        // Batches of 5: one vectored send each while nothing waits.
        for start in (0..2000).step_by(5) {
            let frames: Vec<Bytes> = (start..start + 5).map(numbered).collect();
            let refs: Vec<&Bytes> = frames.iter().collect();
            assert_eq!(o.push_many(&refs), (5, false));
        }
    })
    .await;
}

#[tokio::test]
async fn a_waiting_task_is_woken_by_a_frame_that_did_not_fit() {
    let (server, mut client) = pair().await;
    let (o, rx) = outbox(1, 1 << 20);
    rx.attach(Box::new(server));
    // Fill the socket's buffers without reading.
    let big = Bytes::from(vec![7u8; 1 << 20]);
    let mut waiting = false;
    for _ in 0..64 {
        o.push(&big);
        if matches!(
            std::future::poll_fn(|cx| Poll::Ready(rx.poll_flush(cx))).await,
            Ok(Flush::Blocked { .. })
        ) {
            waiting = true;
            break;
        }
    }
    assert!(waiting, "the socket filled up");
    let drain = tokio::spawn(async move {
        let mut buf = vec![0; 1 << 16];
        loop {
            if client.read(&mut buf).await.unwrap() == 0 {
                break;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(20), flush(&rx))
        .await
        .expect("woken when the socket drained, and flushed");
    drop(rx);
    drop(o);
    drain.await.unwrap();
}

#[tokio::test]
async fn dropping_the_receiver_closes_the_socket() {
    let (server, mut client) = pair().await;
    let (o, rx) = outbox(1, 8);
    rx.attach(Box::new(server));
    drop(rx);
    let mut buf = [0; 8];
    assert_eq!(client.read(&mut buf).await.unwrap(), 0, "EOF");
    assert_eq!(o.push(&Bytes::from_static(b"late")), Pushed::Dropped);
    client.write_all(b"x").await.ok();
}
