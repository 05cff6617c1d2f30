//! Small AMQP helpers: channels, declares, passive counts, headers, errors, timeouts.

use super::*;

pub(super) async fn open_channel(conn: &Connection) -> Result<Channel, BrokerError> {
    conn.create_channel()
        .await
        .map_err(|e| lapin_error("opening a channel", &e))
}

/// Returns the messages taken from a parking queue (the unsettled `tags` of `ch`), closes
/// the channel, then waits (bounded) until the queue shows `expect_ready` messages again: a
/// quorum queue applies returns asynchronously, and a listing followed at once by a count or a
/// redrive must see them. One nack per message, in order: a single multiple-nack does not keep
/// their order in a quorum queue.
pub(super) async fn give_back(
    link: &Link,
    ch: Channel,
    name: &str,
    tags: &[u64],
    expect_ready: u64,
) {
    if tags.is_empty() {
        close_channel(&ch).await;
        return;
    }
    let requeue = BasicNackOptions {
        multiple: false,
        requeue: true,
    };
    for tag in tags {
        if tokio::time::timeout(OP_TIMEOUT, ch.basic_nack(*tag, requeue))
            .await
            .map_or(true, |r| r.is_err())
        {
            break;
        }
    }
    close_channel(&ch).await;
    let Ok(ch) = open_channel(&link.conn).await else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match op(passive_count(&ch, name)).await {
            Ok(Some(n)) if n < expect_ready => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Some(_)) => break,
            Ok(None) | Err(_) => return,
        }
    }
    close_channel(&ch).await;
}

/// Closes a channel if it is open (best effort, bounded).
pub(super) async fn close_channel(ch: &Channel) {
    if ch.status().connected() {
        let _ = tokio::time::timeout(Duration::from_secs(2), ch.close(200, "OK".into())).await;
    }
}

/// Closes a connection if it is open (best effort, bounded).
pub(super) async fn close_connection(conn: &Connection) {
    if conn.status().connected() {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            conn.close(200, "wecom-bridge closing".into()),
        )
        .await;
    }
}

/// Declares a durable queue; if it exists with other arguments (a changed setting), keeps
/// the existing queue and says so: RabbitMQ cannot change queue arguments, policies can.
pub(super) async fn declare_queue(
    link: &Link,
    ch: &mut Channel,
    name: &str,
    args: FieldTable,
) -> Result<(), BrokerError> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    match ch.queue_declare(name.into(), durable, args).await {
        Ok(_) => Ok(()),
        Err(e) if is_precondition_failed(&e) => {
            *ch = open_channel(&link.conn).await?;
            match passive_count(ch, name).await? {
                Some(_) => {
                    warn!(queue = name, error = %e, "queue exists with other arguments; keeping them (change them with a RabbitMQ policy)");
                    Ok(())
                }
                None => Err(lapin_error(&format!("declaring queue {name}"), &e)),
            }
        }
        Err(e) => Err(lapin_error(&format!("declaring queue {name}"), &e)),
    }
}

pub(super) async fn bind(
    ch: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<(), BrokerError> {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| lapin_error(&format!("binding {queue} to {exchange}"), &e))
}

/// Ready messages of a queue (passive declare); `None` if the queue does not exist (the
/// channel is then closed by RabbitMQ).
pub(super) async fn passive_count(ch: &Channel, name: &str) -> Result<Option<u64>, BrokerError> {
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..Default::default()
    };
    match ch
        .queue_declare(name.into(), passive, FieldTable::default())
        .await
    {
        Ok(q) => Ok(Some(u64::from(q.message_count()))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(lapin_error(&format!("looking at queue {name}"), &e)),
    }
}

/// Ready messages of a queue, `None` if it does not exist (reopening the channel RabbitMQ
/// closed then).
pub(super) async fn count(
    link: &Link,
    ch: &mut Channel,
    name: &str,
) -> Result<Option<u64>, BrokerError> {
    let n = op(passive_count(ch, name)).await?;
    if n.is_none() {
        *ch = op(open_channel(&link.conn)).await?;
    }
    Ok(n)
}

/// Bounds an operation by [`OP_TIMEOUT`].
pub(super) async fn op<T>(
    fut: impl Future<Output = Result<T, BrokerError>>,
) -> Result<T, BrokerError> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(BrokerError::Unavailable(format!(
            "RabbitMQ did not answer within {OP_TIMEOUT:?}"
        ))),
    }
}

pub(super) fn amqp_soft_error(e: &lapin::Error) -> Option<&AMQPSoftError> {
    match e.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(soft) => Some(soft),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}

pub(super) fn is_not_found(e: &lapin::Error) -> bool {
    matches!(amqp_soft_error(e), Some(AMQPSoftError::NOTFOUND))
}

pub(super) fn is_precondition_failed(e: &lapin::Error) -> bool {
    matches!(amqp_soft_error(e), Some(AMQPSoftError::PRECONDITIONFAILED))
}

/// Maps a lapin error: refusals that trying again cannot fix are `Refused`, the rest is
/// `Unavailable`.
pub(super) fn lapin_error(context: &str, e: &lapin::Error) -> BrokerError {
    match amqp_soft_error(e) {
        Some(AMQPSoftError::PRECONDITIONFAILED | AMQPSoftError::ACCESSREFUSED) => {
            BrokerError::Refused(format!("{context}: {e}"))
        }
        _ => BrokerError::Unavailable(format!("{context}: {e}")),
    }
}

pub(super) fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_str("quorum"));
    args
}

pub(super) fn long_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// [`quorum_args`] for a queue whose rejected or expired messages go, at least once, to
/// `exchange` with routing key `q`; a full queue refuses publishes instead of dropping.
pub(super) fn dead_lettering_args(exchange: &str, q: &str) -> FieldTable {
    let mut args = quorum_args();
    args.insert("x-dead-letter-exchange".into(), long_str(exchange));
    args.insert("x-dead-letter-routing-key".into(), long_str(q));
    args.insert("x-dead-letter-strategy".into(), long_str("at-least-once"));
    args.insert("x-overflow".into(), long_str("reject-publish"));
    args
}

pub(super) fn put_int(headers: &mut FieldTable, key: &str, v: i64) {
    headers.insert(key.into(), AMQPValue::LongLongInt(v));
}

pub(super) fn put_str(headers: &mut FieldTable, key: &str, v: &str) {
    headers.insert(key.into(), long_str(v));
}

/// Persistent message properties with our headers.
pub(super) fn properties(id: &str, headers: FieldTable) -> BasicProperties {
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_headers(headers);
    if let Ok(id) = ShortString::try_new(id) {
        props = props.with_message_id(id);
    }
    props
}

pub(super) fn header_int(headers: Option<&FieldTable>, key: &str) -> Option<i64> {
    as_int(headers?.inner().get(key)?)
}

pub(super) fn as_int(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok()?,
        _ => return None,
    })
}

pub(super) fn header_str(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    as_str(headers?.inner().get(key)?)
}

pub(super) fn as_str(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// Attempt of a delivery: `wb-attempt` plus the redeliveries RabbitMQ reports.
pub(super) fn attempt_of(headers: Option<&FieldTable>, redelivered: bool) -> u32 {
    let base = header_int(headers, HEADER_ATTEMPT)
        .and_then(|a| u32::try_from(a).ok())
        .filter(|a| *a >= 1)
        .unwrap_or(1);
    let redeliveries = match header_int(headers, "x-delivery-count") {
        Some(n) if n > 0 => u32::try_from(n).unwrap_or(u32::MAX),
        _ => u32::from(redelivered),
    };
    base.saturating_add(redeliveries)
}

/// The most recent `x-death` entry of a message RabbitMQ dead-lettered.
pub(super) struct Death {
    pub(super) reason: String,
    pub(super) time_ms: Option<i64>,
}

pub(super) fn x_death(headers: Option<&FieldTable>) -> Option<Death> {
    let AMQPValue::FieldArray(deaths) = headers?.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
        return None;
    };
    Some(Death {
        reason: header_str(Some(first), "reason").unwrap_or_else(|| "unknown".into()),
        time_ms: header_int(Some(first), "time").map(|s| s.saturating_mul(1000)),
    })
}

/// The state of a connection, from lapin's public predicates.
pub(super) fn conn_state(conn: &Connection) -> ConnectionState {
    let s = conn.status();
    if s.connected() {
        ConnectionState::Connected
    } else if s.reconnecting() {
        ConnectionState::Reconnecting
    } else if s.connecting() {
        ConnectionState::Connecting
    } else if s.closing() {
        ConnectionState::Closing
    } else if s.closed() {
        ConnectionState::Closed
    } else if s.errored() {
        ConnectionState::Error
    } else {
        ConnectionState::Initial
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_adds_redeliveries() {
        let mut h = FieldTable::default();
        put_int(&mut h, HEADER_ATTEMPT, 3);
        assert_eq!(attempt_of(Some(&h), false), 3);
        assert_eq!(attempt_of(Some(&h), true), 4);
        h.insert("x-delivery-count".into(), AMQPValue::LongInt(2));
        assert_eq!(attempt_of(Some(&h), true), 5);
        assert_eq!(attempt_of(None, false), 1);
        assert_eq!(attempt_of(None, true), 2);
    }

    #[test]
    fn names_follow_the_prefix() {
        let n = Names {
            prefix: "wb".into(),
        };
        assert_eq!(n.work_queue("route"), "wb.route");
        assert_eq!(n.dead_queue("route"), "wb.route.dead");
        assert_eq!(
            n.delay_queue("route", Duration::from_secs(30)),
            "wb.route.delay.30s"
        );
        assert_eq!(
            n.delay_queue("route", Duration::from_millis(1500)),
            "wb.route.delay.1500ms"
        );
        assert_eq!(n.work_exchange(), "wb.work");
        assert_eq!(n.dead_exchange(), "wb.dead");
    }

    #[test]
    fn headers_read_back_any_integer_width() {
        let mut h = FieldTable::default();
        h.insert("a".into(), AMQPValue::ShortShortUInt(7));
        h.insert("b".into(), AMQPValue::LongUInt(9));
        put_str(&mut h, "c", "汉字");
        assert_eq!(header_int(Some(&h), "a"), Some(7));
        assert_eq!(header_int(Some(&h), "b"), Some(9));
        assert_eq!(header_str(Some(&h), "c").as_deref(), Some("汉字"));
        assert_eq!(header_int(Some(&h), "c"), None);
    }
}
