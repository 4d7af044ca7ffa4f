//! `Sharded`, the Tokio thread-per-core runtime: where its tasks run, and when its threads end.
//! What a manager does on it is the driver suite's (`tests/suite.rs`, `mod sharded`).

use std::sync::mpsc;
use std::time::Duration;
use tendril_net::runtime::Runtime;
use tendril_tokio::Sharded;

const WAIT: Duration = Duration::from_secs(10);

/// The name of the thread it runs on, sent when it is polled.
fn report_thread(tx: mpsc::Sender<String>) -> futures::future::BoxFuture<'static, ()> {
    Box::pin(async move {
        let name = std::thread::current().name().unwrap_or_default().to_owned();
        let _ = tx.send(name);
    })
}

#[test]
fn a_task_runs_on_the_shard_it_is_spawned_on_and_spawns_stay_on_the_calling_shard() {
    let runtime = Sharded::new(2).unwrap();
    let (tx, rx) = mpsc::channel();
    runtime.spawn(report_thread(tx.clone()));
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "tendril-tokio-shard-0");
    for shard in [1, 0] {
        let (inner, tx) = (runtime.clone(), tx.clone());
        runtime.spawn_on(
            shard,
            Box::pin(async move {
                report_thread(tx.clone()).await;
                inner.spawn(report_thread(tx));
            }),
        );
        let expected = format!("tendril-tokio-shard-{shard}");
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), expected, "spawned on it");
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), expected, "spawned from it");
    }
}

#[test]
fn another_sharded_runtimes_thread_spawns_on_shard_0() {
    let (first, second) = (Sharded::new(2).unwrap(), Sharded::new(2).unwrap());
    let (tx, rx) = mpsc::channel();
    let inner = second.clone();
    first.spawn_on(1, Box::pin(async move { inner.spawn(report_thread(tx)) }));
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "tendril-tokio-shard-0");
}

#[test]
fn the_shard_threads_end_with_the_last_clone() {
    /// Says when it is dropped: when its shard's runtime ends, as its task never finishes.
    struct Dropped(mpsc::Sender<()>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let runtime = Sharded::new(2).unwrap();
    let (tx, rx) = mpsc::channel();
    for shard in 0..2 {
        let dropped = Dropped(tx.clone());
        runtime.spawn_on(
            shard,
            Box::pin(async move {
                let _dropped = dropped;
                std::future::pending::<()>().await;
            }),
        );
    }
    let clone = runtime.clone();
    drop(runtime);
    assert!(rx.try_recv().is_err(), "a clone still runs the shards");
    drop(clone);
    for shard in 0..2 {
        rx.recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("shard {shard} still runs after the last clone"));
    }
}
