//! Subscription routing: `TopicTrie::for_each_match` and subscribe/unsubscribe churn on a trie of 100,000
//! subscriptions.
//!
//! The subscriptions model a fleet: 1,000 sites of 100 devices each, device ids unique across the fleet,
//! every device publishing `site/{s}/device/{d}/temp`. Of the 100,000 filters (generated from a fixed seed):
//!
//! - 80% exact: `site/{s}/device/{d}/temp` (a device's own consumer),
//! - 7.5% `site/{s}/device/+/temp` (a site dashboard),
//! - 7.5% `site/+/device/{d}/#` (one device wherever it is installed),
//! - 5% `site/{s}/#` (everything of one site).
//!
//! Matching is measured on batches of 1,000 topic names, reported as topics matched per second: a batch
//! of device topics (`hit`), of topics only the `#` filters see (`status`), of topics no filter matches
//! (`miss`), and a mixed batch of all three. The average number of subscribers matched per topic in each
//! batch is printed before the measurements. Churn is 1,000 subscribe + unsubscribe pairs per iteration.
//!
//! Run: `cargo bench -p cicada-engine --bench routing`

use cicada_engine::router::TopicTrie;
use cicada_engine::Rng;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

/// Sites in the fleet.
const SITES: u64 = 1_000;
/// Devices per site; device ids run from `s * DEVICES_PER_SITE` to `(s + 1) * DEVICES_PER_SITE - 1`.
const DEVICES_PER_SITE: u64 = 100;
/// Subscriptions in the trie.
const SUBSCRIPTIONS: u32 = 100_000;
/// Topics (or subscribe/unsubscribe pairs) per iteration.
const BATCH: usize = 1_000;
/// The seed of every generated filter and topic.
const SEED: u64 = 0x0C1C_ADA5;

/// A random device: `(site, device id)`.
fn device(rng: &mut Rng) -> (u64, u64) {
    let s = rng.below(SITES);
    (s, s * DEVICES_PER_SITE + rng.below(DEVICES_PER_SITE))
}

/// One filter of the mix described in the module documentation.
fn filter(rng: &mut Rng) -> String {
    let (s, d) = device(rng);
    match rng.below(1000) {
        0..=799 => format!("site/{s}/device/{d}/temp"),
        800..=874 => format!("site/{s}/device/+/temp"),
        875..=949 => format!("site/+/device/{d}/#"),
        _ => format!("site/{s}/#"),
    }
}

fn trie(rng: &mut Rng) -> TopicTrie<u32, ()> {
    let mut trie = TopicTrie::default();
    for key in 0..SUBSCRIPTIONS {
        trie.insert(&filter(rng), key, ());
    }
    assert_eq!(trie.len(), SUBSCRIPTIONS as usize, "every key is new");
    trie
}

/// A batch of topic names of one kind.
fn topics(rng: &mut Rng, kind: &str) -> Vec<String> {
    (0..BATCH)
        .map(|i| {
            let (s, d) = device(rng);
            match kind {
                "hit" => format!("site/{s}/device/{d}/temp"),
                "status" => format!("site/{s}/device/{d}/status"),
                "miss" => format!("fleet/{s}/truck/{d}/gps"),
                // 70% device temperatures, 15% status topics, 15% unknown topics, interleaved.
                _ => match i % 20 {
                    0..=13 => format!("site/{s}/device/{d}/temp"),
                    14..=16 => format!("site/{s}/device/{d}/status"),
                    _ => format!("fleet/{s}/truck/{d}/gps"),
                },
            }
        })
        .collect()
}

/// Matches every topic of the batch; returns the number of (topic, subscriber) matches.
fn match_all(trie: &TopicTrie<u32, ()>, topics: &[String]) -> usize {
    let mut matched = 0;
    for topic in topics {
        trie.for_each_match(topic, |key, _| {
            black_box(key);
            matched += 1;
        });
    }
    matched
}

fn matching(c: &mut Criterion) {
    let mut rng = Rng::new(SEED);
    let trie = trie(&mut rng);
    let mut group = c.benchmark_group("routing/match");
    group.throughput(Throughput::Elements(BATCH as u64));
    for kind in ["hit", "status", "miss", "mixed"] {
        let batch = topics(&mut rng, kind);
        let matched = match_all(&trie, &batch);
        let hit = batch
            .iter()
            .filter(|t| {
                let mut any = false;
                trie.for_each_match(t, |_, _| any = true);
                any
            })
            .count();
        println!(
            "routing/match/{kind}: {:.2} subscribers matched per topic on average, \
             {hit} of {BATCH} topics matched by at least one filter",
            matched as f64 / BATCH as f64
        );
        group.bench_function(kind, |b| {
            b.iter(|| {
                let n = match_all(&trie, &batch);
                assert_eq!(n, matched, "matching is deterministic");
                n
            })
        });
    }
    group.finish();
}

fn churn(c: &mut Criterion) {
    let mut rng = Rng::new(SEED);
    let mut trie = trie(&mut rng);
    let filters: Vec<(String, u32)> = (0..BATCH)
        .map(|i| (filter(&mut rng), SUBSCRIPTIONS + i as u32))
        .collect();
    let mut group = c.benchmark_group("routing/churn");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("subscribe+unsubscribe", |b| {
        b.iter(|| {
            for (f, key) in &filters {
                black_box(trie.insert(f, *key, ()));
            }
            for (f, key) in &filters {
                trie.remove(f, key).expect("subscribed just before");
            }
        })
    });
    group.finish();
    assert_eq!(
        trie.len(),
        SUBSCRIPTIONS as usize,
        "churn leaves the trie as it was"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = matching, churn
}
criterion_main!(benches);
