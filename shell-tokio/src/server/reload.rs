//! Reloading (SIGHUP or `POST /api/v1/reload`): the configuration file is read again and what can
//! change live takes effect; what cannot is reported by key. The files the configuration names
//! (certificates, password and JWT keys, ACL, bans) are read again too. A file or configuration
//! that fails to load keeps the old one in force.

use std::collections::BTreeMap;

use bytes::Bytes;
use cicada_engine::{ConnId, Input};
use serde::Serialize;
use tracing::{error, info, warn};

use super::EngineTask;
use crate::config::Settings;

/// What a reload did, by configuration key.
#[derive(Debug, Default, Serialize)]
pub(super) struct ReloadReport {
    /// Changed and now in force.
    pub applied: Vec<String>,
    /// Changed, but in force only after a restart.
    pub needs_restart: Vec<String>,
    /// Files read again (whether or not they changed).
    pub reloaded: Vec<String>,
    /// What failed to load; the old version stays in force.
    pub errors: Vec<String>,
}

impl ReloadReport {
    pub(super) fn log(&self) {
        info!(
            applied = ?self.applied,
            reloaded = ?self.reloaded,
            "reload done"
        );
        if !self.needs_restart.is_empty() {
            warn!(keys = ?self.needs_restart, "reload: these settings changed but take effect only after a restart");
        }
        for e in &self.errors {
            error!("reload: {e}");
        }
    }
}

/// The keys of settings the shell cannot change live, where `old` and `new` differ.
fn shell_restart_keys(old: &Settings, new: &Settings) -> Vec<String> {
    let mut keys = Vec::new();
    let mut differs = |key: &str, changed: bool| {
        if changed {
            keys.push(key.to_string());
        }
    };
    differs("listener", old.listeners != new.listeners);
    differs("server.data_dir", old.data_dir != new.data_dir);
    differs("storage.backend", old.backend != new.backend);
    differs("storage.fsync", old.fsync != new.fsync);
    differs(
        "storage.fsync_interval_ms",
        old.fsync_interval != new.fsync_interval,
    );
    differs("log.format", old.log_format != new.log_format);
    differs("auth", old.auth != new.auth);
    differs("acl.file", old.acl_file != new.acl_file);
    differs("bans.file", old.bans_file != new.bans_file);
    differs("http", old.http != new.http);
    differs("tracing", old.otlp != new.otlp);
    keys
}

impl EngineTask {
    /// Reloads the configuration and the files it names.
    pub(super) fn reload(&mut self, batch: &mut BTreeMap<ConnId, Vec<Bytes>>) -> ReloadReport {
        let mut report = ReloadReport::default();
        let mut inputs = Vec::new();
        match self.source.settings() {
            Ok(new) => self.reconfigure(new, &mut report, batch),
            Err(e) => report
                .errors
                .push(format!("configuration kept as it was: {e}")),
        }
        if let Some(listeners) = &self.listeners {
            let n = listeners.reload_tls();
            if n > 0 {
                report
                    .reloaded
                    .push(format!("tls certificates ({n} listeners)"));
            }
        }
        match self.auth.reload(&self.settings.auth) {
            Ok(revoked) => {
                report.reloaded.push("auth files".into());
                for (conn, why) in revoked {
                    warn!(%conn, "disconnecting on reload: {why}");
                    inputs.push(Input::Kick {
                        conn,
                        reason: cicada_engine::codec::ReasonCode::NotAuthorized,
                        why,
                    });
                }
            }
            Err(e) => report
                .errors
                .push(format!("authentication files kept as they were: {e}")),
        }
        if let Some(path) = &self.settings.acl_file {
            match crate::policy::load_acl(path) {
                Ok(acl) => {
                    report
                        .reloaded
                        .push(format!("acl.file ({} rules)", acl.len()));
                    inputs.push(Input::SetAcl { acl: Some(acl) });
                }
                Err(e) => report.errors.push(format!("ACL kept as it was: {e}")),
            }
        }
        if let Some(path) = &self.settings.bans_file {
            match crate::banfile::load(path) {
                Ok(bans) => {
                    report
                        .reloaded
                        .push(format!("bans.file ({} bans)", bans.len()));
                    inputs.push(Input::SetBans {
                        bans: crate::policy::engine_bans(&bans),
                    });
                    self.bans = bans;
                }
                Err(e) => report.errors.push(format!("bans kept as they were: {e}")),
            }
        }
        for input in inputs {
            let now = self.now();
            self.engine.handle(now, input);
        }
        self.drain(batch);
        report
    }

    /// Applies the live parts of new settings: the engine's limits (it says which it took), the
    /// log filter, the shutdown grace.
    fn reconfigure(
        &mut self,
        new: Settings,
        report: &mut ReloadReport,
        batch: &mut BTreeMap<ConnId, Vec<Bytes>>,
    ) {
        report
            .needs_restart
            .extend(shell_restart_keys(&self.settings, &new));
        let mut engine_config = new.engine.clone();
        // The ACL comes from its file, reloaded on its own below.
        engine_config.acl = self.engine.config().acl.clone();
        self.reconfigured = None;
        let now = self.now();
        self.engine.handle(
            now,
            Input::Reconfigure {
                config: Box::new(engine_config),
            },
        );
        self.drain(batch);
        match self.reconfigured.take() {
            Some(r) => {
                if let Some(why) = r.rejected {
                    report
                        .errors
                        .push(format!("limits kept as they were: {why}"));
                }
                let key = |field: &&str| crate::config::engine_key(field);
                report.applied.extend(r.applied.iter().map(key));
                report.needs_restart.extend(r.needs_restart.iter().map(key));
            }
            None => report
                .errors
                .push("the engine did not report its reconfiguration".into()),
        }
        if new.log_level != self.settings.log_level {
            match (self.log)(&new.log_level) {
                Ok(()) => report.applied.push("log.level".into()),
                Err(e) => report.errors.push(format!("log.level kept as it was: {e}")),
            }
        }
        if new.shutdown_grace != self.settings.shutdown_grace {
            report.applied.push("server.shutdown_grace_secs".into());
        }
        // What a restart would take stays as it is: the settings in force are the old ones with
        // the live parts replaced.
        let current = &mut self.settings;
        current.engine = new.engine;
        current.log_level = new.log_level;
        current.shutdown_grace = new.shutdown_grace;
    }
}
