//! Pure limits: token buckets (time injected) and bans.
