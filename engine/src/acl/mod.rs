//! Access control lists: a small rule language, compiled for the engine to check PUBLISH and SUBSCRIBE.
