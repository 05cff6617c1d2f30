//! The typed, versioned messages that travel between stages, and their typed ids.
//!
//! The broker carries [`Envelope`]s and never reads their body; this module is where a body
//! becomes a [`Message`] and back. Version 2 bodies are a tagged JSON object:
//! `{"type": "event", "xml": "…"}`, `{"type": "delivery_job", "key": "job_…", …}` or
//! `{"type": "writeback", "key": "job_…", "kind": "applicant", …}`.
//! Version 1 envelopes (a `kind` and the content in a string: the XML for events, the job as
//! JSON-in-a-string for `kind = "delivery_job"`) are still decoded, so a rolling upgrade never
//! strands what is already queued. `tests/fixtures/envelopes/` freezes one of each.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::broker::{Body, Envelope};
use crate::catalog::Action;
use crate::map::input::MapInput;
use crate::record::WritebackKind;

/// The `kind` header of delivery-job envelopes.
pub const DELIVERY_JOB_KIND: &str = "delivery_job";
/// The `kind` header of writeback-job envelopes.
pub const WRITEBACK_KIND: &str = "writeback";

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id read from a message, the journal or an operator.
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

typed_id!(
    /// The id of an accepted callback (`evt_` + 24 hex digits of its content hash).
    EventId
);

typed_id!(
    /// The idempotency key of a delivery job (`job_` + 32 hex digits): the same event
    /// business key, mapping and action always give the same key; targets receive it so they
    /// can refuse duplicates.
    JobKey
);

impl JobKey {
    /// The key of the job for (`app`, `business`, `mapping`, `action`).
    pub fn derive(app: &str, business: &str, mapping: &str, action: Action) -> JobKey {
        let mut h = Sha256::new();
        for part in [app, business, mapping, action.as_str()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        JobKey(format!("job_{}", hex::encode(&h.finalize()[..16])))
    }
}

/// A unit of work for the deliver stage: one event, one mapping, one connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryJob {
    /// Deterministic idempotency key (see [`JobKey`]).
    pub key: JobKey,
    /// The mapping that builds the target document.
    pub mapping: String,
    /// The connector that sends it.
    pub connector: String,
    /// `approved`, `revoked` or `changed`.
    pub action: Action,
    /// The event that caused it.
    pub event_id: EventId,
    /// The app it came from.
    pub app: String,
    /// Business key (the SpNo for approvals, the event's key for contact changes).
    pub business_key: String,
    /// What the mapping reads.
    pub input: MapInput,
}

impl DeliveryJob {
    /// The current-version envelope of this job; `created_at_ms` is when its event was
    /// accepted.
    pub fn to_envelope(&self, created_at_ms: i64) -> Result<Envelope, MessageError> {
        let body = serde_json::to_value(WireRef::DeliveryJob(self)).map_err(|source| {
            MessageError::Encode {
                id: self.key.to_string(),
                source,
            }
        })?;
        Ok(Envelope::new(
            self.key.as_str(),
            DELIVERY_JOB_KIND,
            self.business_key.as_str(),
            self.app.as_str(),
            created_at_ms,
            body,
        ))
    }
}

/// A unit of work for the writeback stage: one WeCom notification about one delivery job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WritebackJob {
    /// The delivery job it reports on (with `kind`, the notification's identity: the ledger
    /// keeps one record per pair, and a notification that was sent is not sent again).
    pub key: JobKey,
    /// For whom.
    pub kind: WritebackKind,
    /// The app that sends it (its `agent_id` and secret).
    pub app: String,
    /// Business key (SpNo) of the job.
    pub business_key: String,
    /// WeCom's `message/send` body without `agentid` (added when sent).
    pub message: serde_json::Value,
}

impl WritebackJob {
    /// The envelope of this job (id `<job key>.<kind>`).
    pub fn to_envelope(&self, created_at_ms: i64) -> Result<Envelope, MessageError> {
        let id = format!("{}.{}", self.key, self.kind.as_str());
        let body = serde_json::to_value(WireRef::Writeback(self)).map_err(|source| {
            MessageError::Encode {
                id: id.clone(),
                source,
            }
        })?;
        Ok(Envelope::new(
            id,
            WRITEBACK_KIND,
            self.business_key.as_str(),
            self.app.as_str(),
            created_at_ms,
            body,
        ))
    }
}

/// A decoded envelope body.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one message per delivery, moved once into its handler"
)]
pub enum Message {
    /// An accepted callback, as the journal relayed it.
    Event {
        /// Its id.
        id: EventId,
        /// Its kind (`approval_change`, `contact_change`, …).
        kind: String,
        /// The app that received it.
        app: String,
        /// Its business key (`SpNo:SpStatus` for approvals).
        business_key: String,
        /// When ingress accepted it (Unix ms).
        received_at_ms: i64,
        /// The decrypted callback XML.
        xml: String,
    },
    /// A job for the deliver stage.
    DeliveryJob(DeliveryJob),
    /// A notification for the writeback stage.
    Writeback(WritebackJob),
}

/// The envelope of an accepted callback.
pub fn event_envelope(
    id: &EventId,
    kind: &str,
    business_key: &str,
    app: &str,
    received_at_ms: i64,
    xml: String,
) -> Envelope {
    // a struct of one string cannot fail to serialise
    let body = serde_json::json!({ "type": "event", "xml": xml });
    Envelope::new(id.as_str(), kind, business_key, app, received_at_ms, body)
}

/// The v2 body, borrowed for encoding.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireRef<'a> {
    DeliveryJob(&'a DeliveryJob),
    Writeback(&'a WritebackJob),
}

/// The v2 body, owned for decoding.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "decoded once per delivery and moved out at once"
)]
enum Wire {
    Event { xml: String },
    DeliveryJob(DeliveryJob),
    Writeback(WritebackJob),
}

/// A v1 delivery job: `document` was untyped JSON.
#[derive(Deserialize)]
struct V1Job {
    idempotency_key: String,
    mapping: String,
    connector: String,
    action: Action,
    event_id: String,
    app: String,
    business_key: String,
    document: serde_json::Value,
}

/// Why an envelope is not a message this build can handle.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The body does not fit any message type.
    #[error("message {id} (kind {kind}, envelope v{v}) cannot be decoded")]
    Body {
        /// Envelope id.
        id: String,
        /// Envelope kind.
        kind: String,
        /// Envelope version.
        v: u16,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A v1 job's document is not an approval, contact or customer document.
    #[error("v1 delivery job {id}: {reason}")]
    V1Document {
        /// Envelope id.
        id: String,
        /// What is missing.
        reason: &'static str,
    },
    /// A message could not be encoded.
    #[error("message {id} cannot be encoded")]
    Encode {
        /// Message id.
        id: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

impl Message {
    /// Decodes an envelope of either version.
    pub fn decode(env: &Envelope) -> Result<Message, MessageError> {
        let body_error = |source| MessageError::Body {
            id: env.id.clone(),
            kind: env.kind.clone(),
            v: env.v,
            source,
        };
        match &env.body {
            Body::Message(value) => match Wire::deserialize(value).map_err(body_error)? {
                Wire::Event { xml } => Ok(Message::Event {
                    id: EventId::new(env.id.as_str()),
                    kind: env.kind.clone(),
                    app: env.app.clone(),
                    business_key: env.business_key.clone(),
                    received_at_ms: env.created_at_ms,
                    xml,
                }),
                Wire::DeliveryJob(job) => Ok(Message::DeliveryJob(job)),
                Wire::Writeback(job) => Ok(Message::Writeback(job)),
            },
            Body::Legacy(payload) if env.kind == DELIVERY_JOB_KIND => {
                let v1: V1Job = serde_json::from_str(payload).map_err(body_error)?;
                let input = MapInput::from_v1_document(v1.document).map_err(|reason| {
                    MessageError::V1Document {
                        id: env.id.clone(),
                        reason,
                    }
                })?;
                Ok(Message::DeliveryJob(DeliveryJob {
                    key: JobKey::new(v1.idempotency_key),
                    mapping: v1.mapping,
                    connector: v1.connector,
                    action: v1.action,
                    event_id: EventId::new(v1.event_id),
                    app: v1.app,
                    business_key: v1.business_key,
                    input,
                }))
            }
            Body::Legacy(xml) => Ok(Message::Event {
                id: EventId::new(env.id.as_str()),
                kind: env.kind.clone(),
                app: env.app.clone(),
                business_key: env.business_key.clone(),
                received_at_ms: env.created_at_ms,
                xml: xml.clone(),
            }),
        }
    }

    /// The message's kind, for logs and metrics (`approval_change`, `delivery_job`, …).
    pub fn kind(&self) -> &str {
        match self {
            Message::Event { kind, .. } => kind,
            Message::DeliveryJob(_) => DELIVERY_JOB_KIND,
            Message::Writeback(_) => WRITEBACK_KIND,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_keys_are_deterministic_and_distinct() {
        let k = JobKey::derive("demo", "202506050012", "expense-voucher", Action::Approved);
        assert_eq!(
            k,
            JobKey::derive("demo", "202506050012", "expense-voucher", Action::Approved)
        );
        assert_ne!(
            k,
            JobKey::derive("demo", "202506050012", "expense-voucher", Action::Revoked)
        );
        assert_ne!(
            k,
            JobKey::derive("demo", "202506050012", "other-mapping", Action::Approved)
        );
        assert!(k.as_str().starts_with("job_") && k.as_str().len() == 36);
        // the same key as before the typed ids: jobs already delivered keep their keys
        assert_eq!(k.as_str(), "job_8baa3877ccd83e48fa76baa789209e4d");
    }

    #[test]
    fn events_round_trip_through_the_envelope() {
        let id = EventId::new("evt_0123");
        let env = event_envelope(&id, "approval_change", "1:2", "demo", 7, "<xml/>".into());
        let back = Envelope::from_bytes(&env.to_bytes()).unwrap();
        let Message::Event {
            id: got,
            kind,
            received_at_ms,
            xml,
            ..
        } = Message::decode(&back).unwrap()
        else {
            panic!("not an event")
        };
        assert_eq!(
            (got, kind.as_str(), received_at_ms, xml.as_str()),
            (id, "approval_change", 7, "<xml/>")
        );
    }

    #[test]
    fn the_frozen_writeback_envelope_decodes_and_encodes_the_same() {
        let bytes = include_bytes!("../../tests/fixtures/envelopes/v2_writeback_applicant.json");
        let env = Envelope::from_bytes(bytes).unwrap();
        let Message::Writeback(job) = Message::decode(&env).unwrap() else {
            panic!("not a writeback job")
        };
        assert_eq!(job.kind, WritebackKind::Applicant);
        assert_eq!(job.key.as_str(), "job_8baa3877ccd83e48fa76baa789209e4d");
        assert_eq!(job.message["textcard"]["title"], "报销单已入账");
        assert_eq!(Message::Writeback(job.clone()).kind(), WRITEBACK_KIND);
        assert_eq!(job.to_envelope(env.created_at_ms).unwrap(), env);
    }

    #[test]
    fn an_unknown_type_is_a_typed_error_naming_the_message() {
        let env = Envelope::new(
            "x1",
            "k",
            "b",
            "a",
            1,
            serde_json::json!({"type": "telepathy"}),
        );
        let e = Message::decode(&env).unwrap_err();
        assert!(matches!(e, MessageError::Body { .. }));
        assert!(e.to_string().contains("x1"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
