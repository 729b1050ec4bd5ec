//! The cluster work that covers the whole replicated state at once, on the engine's thread: taking a
//! snapshot (every `snapshot_entries` entries, and at each membership change), installing one (a node
//! that fell behind the log), and applying a `Down` (a node declared dead). Each one pauses every
//! client of the node for as long as it takes.
//!
//! The state: 100,000 clients over 3 nodes. Every second one has a persistent session with 2
//! subscriptions and 4 queued QoS 1 messages (50,000 session copies, 100,000 filters of interest);
//! the other half are clean sessions with a will in the table. 10,000 retained messages. Every
//! payload is 64 bytes. The snapshot's size is printed before the measurements.
//!
//! Run: `cargo bench -p cicada-engine --bench cluster_state`

use std::time::Duration;

use cicada_engine::cluster::sample::{Sample, Shape};
use cicada_engine::Instant;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const SHAPE: Shape = Shape {
    nodes: 3,
    clients: 100_000,
    persistent_every: 2,
    subscriptions: 2,
    queued: 4,
    payload: 64,
    retained: 10_000,
};

fn whole_state(c: &mut Criterion) {
    let now = Instant::from_duration(Duration::from_secs(60));
    let sample = Sample::new(&SHAPE);
    let data = sample.snapshot(now);
    println!(
        "cluster state: {} clients, {} session copies, {} retained; snapshot {:.1} MiB",
        SHAPE.clients,
        sample.copies(),
        SHAPE.retained,
        data.len() as f64 / (1024.0 * 1024.0)
    );
    let mut group = c.benchmark_group("cluster_state");
    group.sample_size(10);
    group.bench_function("take snapshot", |b| b.iter(|| sample.snapshot(now)));
    group.bench_function("install snapshot", |b| {
        b.iter(|| Sample::install(data.clone(), now).expect("the snapshot decodes"))
    });
    // Node 1 owns a third of the clients: its persistent sessions move to node 2 from their
    // copies, and its clean sessions' wills come out of the table.
    group.bench_function("declare a node down", |b| {
        b.iter_batched(
            || Sample::install(data.clone(), now).expect("the snapshot decodes"),
            // The sample is returned, so its drop is not measured.
            |mut sample| {
                let moved = sample.declare_down(1, 2);
                (sample, moved)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    targets = whole_state
}
criterion_main!(benches);
