//! What `cicada-uring` does not do, it refuses at start with the key to change, instead of ignoring it.

#[path = "../../shell-tokio/tests/support/mod.rs"]
mod support;

#[test]
fn a_cluster_section_is_refused_with_its_key() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("cicada.toml");
    std::fs::write(
        &config,
        "[cluster]\nnode = 1\nplaintext = true\n[[cluster.members]]\nnode = 1\naddress = \"127.0.0.1:7101\"\n",
    )
    .expect("write config");
    let log = support::Broker::try_start(&["--config", config.to_str().expect("utf-8")])
        .err()
        .expect("cicada-uring refuses to start as a cluster node");
    assert!(
        log.contains("config key `cluster`") && log.contains("run `cicada`"),
        "{log}"
    );
}
