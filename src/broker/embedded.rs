//! Embedded broker on the local store (stub; being implemented).
