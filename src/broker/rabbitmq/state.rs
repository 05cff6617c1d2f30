//! Shared state of the RabbitMQ back end: names, the connection (`Link`), declaring the
//! topology, publishing with confirms, and settling.

use super::*;

/// Exchange and queue names under the prefix.
pub(super) struct Names {
    pub(super) prefix: String,
}

impl Names {
    pub(super) fn work_exchange(&self) -> String {
        format!("{}.work", self.prefix)
    }
    pub(super) fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }
    pub(super) fn work_queue(&self, q: &str) -> String {
        format!("{}.{q}", self.prefix)
    }
    pub(super) fn dead_queue(&self, q: &str) -> String {
        format!("{}.{q}.dead", self.prefix)
    }
    pub(super) fn delay_queue(&self, q: &str, tier: Duration) -> String {
        let label = if tier.as_millis().is_multiple_of(1000) {
            format!("{}s", tier.as_secs())
        } else {
            format!("{}ms", tier.as_millis())
        };
        format!("{}.{q}.delay.{label}", self.prefix)
    }
    pub(super) fn all_queues(&self, q: &str, tiers: &[Duration]) -> Vec<String> {
        let mut v = vec![self.work_queue(q), self.dead_queue(q)];
        v.extend(tiers.iter().map(|t| self.delay_queue(q, *t)));
        v
    }
}

pub(super) struct Inner {
    pub(super) url: String,
    pub(super) names: Names,
    pub(super) prefetch: u16,
    pub(super) tiers: Vec<Duration>,
    pub(super) delivery_limit: u32,
    /// The current connection; `None` while the supervisor rebuilds it (or after close).
    pub(super) link: watch::Sender<Option<Arc<Link>>>,
    pub(super) shutdown: watch::Sender<bool>,
    /// Logical queues whose topology is declared on the current broker.
    pub(super) declared: RwLock<HashSet<String>>,
    pub(super) declare_lock: tokio::sync::Mutex<()>,
    /// Deliveries handed out by this process and not settled, per logical queue.
    pub(super) held: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// Abandoned connections whose lapin recovery might still come back: closed if it does.
    pub(super) graveyard: Mutex<Vec<(Instant, Arc<Link>)>>,
    pub(super) consumer_seq: AtomicU64,
}

impl Inner {
    pub(super) fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(super) fn is_connected(&self) -> bool {
        !self.is_shut_down() && self.link.borrow().as_ref().is_some_and(|l| l.connected())
    }

    /// The current connection if it is up; `Unavailable` at once otherwise.
    pub(super) fn live_link(&self) -> Result<Arc<Link>, BrokerError> {
        if self.is_shut_down() {
            return Err(BrokerError::Closed);
        }
        match &*self.link.borrow() {
            Some(l) if l.connected() => Ok(l.clone()),
            Some(_) => Err(BrokerError::Unavailable(
                "the connection to RabbitMQ was lost and is being recovered".into(),
            )),
            None => Err(BrokerError::Unavailable(
                "not connected to RabbitMQ; reconnecting".into(),
            )),
        }
    }

    pub(super) fn held(&self, queue: &str) -> Arc<AtomicU64> {
        lock(&self.held)
            .entry(queue.to_string())
            .or_default()
            .clone()
    }

    pub(super) fn consumer_tag(&self, queue: &str) -> String {
        let n = self.consumer_seq.fetch_add(1, Ordering::Relaxed);
        format!("wb.{queue}.{}.{n}", std::process::id())
    }

    /// Declares the topology of `q` unless this connection already did.
    pub(super) async fn ensure_declared(&self, q: &str) -> Result<(), BrokerError> {
        if q.is_empty() {
            return Err(BrokerError::Refused("a queue name cannot be empty".into()));
        }
        if read(&self.declared).contains(q) {
            return Ok(());
        }
        let _guard = self.declare_lock.lock().await;
        if read(&self.declared).contains(q) {
            return Ok(());
        }
        let link = self.live_link()?;
        op(self.declare_on(&link, &[q.to_string()])).await?;
        write(&self.declared).insert(q.to_string());
        Ok(())
    }

    /// Declares the exchanges and the topology of `queues` on `link` (idempotent).
    pub(super) async fn declare_on(
        &self,
        link: &Link,
        queues: &[String],
    ) -> Result<(), BrokerError> {
        let mut ch = open_channel(&link.conn).await?;
        let res = self.declare_with(link, &mut ch, queues).await;
        close_channel(&ch).await;
        res
    }

    pub(super) async fn declare_with(
        &self,
        link: &Link,
        ch: &mut Channel,
        queues: &[String],
    ) -> Result<(), BrokerError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for ex in [self.names.work_exchange(), self.names.dead_exchange()] {
            ch.exchange_declare(
                ex.as_str().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(|e| lapin_error(&format!("declaring exchange {ex}"), &e))?;
        }
        for q in queues {
            let work = self.names.work_queue(q);
            let mut args = dead_lettering_args(&self.names.dead_exchange(), q);
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
            );
            declare_queue(link, ch, &work, args).await?;
            bind(ch, &work, &self.names.work_exchange(), q).await?;

            let dead = self.names.dead_queue(q);
            declare_queue(link, ch, &dead, quorum_args()).await?;
            bind(ch, &dead, &self.names.dead_exchange(), q).await?;

            for tier in &self.tiers {
                let delay = self.names.delay_queue(q, *tier);
                let ttl = i64::try_from(tier.as_millis()).unwrap_or(i64::MAX);
                let mut args = dead_lettering_args(&self.names.work_exchange(), q);
                args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
                declare_queue(link, ch, &delay, args).await?;
            }
        }
        Ok(())
    }

    /// Publishes to the work queue of `q` (through the work exchange).
    pub(super) async fn publish_to_work(
        &self,
        q: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        let exchange = self.names.work_exchange();
        self.publish_declared(q, &exchange, q, body, props).await
    }

    /// Publishes straight to one of the queues of `q` (delay or parking queue).
    pub(super) async fn publish_to_queue(
        &self,
        q: &str,
        target: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        self.publish_declared(q, "", target, body, props).await
    }

    /// Publishes after making sure the topology of `q` exists; if RabbitMQ returns the message
    /// as unroutable (someone deleted a queue behind our back), declares again and retries once.
    pub(super) async fn publish_declared(
        &self,
        q: &str,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        self.ensure_declared(q).await?;
        match self
            .publish_raw(exchange, routing_key, body, props.clone())
            .await
        {
            Err(PublishError::Unroutable(why)) => {
                warn!(queue = q, %why, "message returned as unroutable; declaring the topology again");
                write(&self.declared).remove(q);
                self.ensure_declared(q).await?;
                self.publish_raw(exchange, routing_key, body, props)
                    .await
                    .map_err(Into::into)
            }
            Err(PublishError::Broker(e)) => {
                if matches!(&e, BrokerError::Unavailable(m) if m.contains("NOT_FOUND")) {
                    write(&self.declared).remove(q);
                }
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    /// One confirmed, persistent, mandatory publish, bounded by [`PUBLISH_TIMEOUT`].
    pub(super) async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), PublishError> {
        let link = self.live_link()?;
        let attempt = async {
            let ch = link.publisher().await?;
            let options = BasicPublishOptions {
                mandatory: true,
                immediate: false,
            };
            let confirm = ch
                .basic_publish(exchange.into(), routing_key.into(), options, body, props)
                .await
                .map_err(|e| lapin_error("publishing", &e))?;
            confirm
                .await
                .map_err(|e| lapin_error("waiting for the publisher confirm", &e))
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, attempt).await {
            Err(_) => Err(BrokerError::Unavailable(format!(
                "RabbitMQ did not confirm the message within {PUBLISH_TIMEOUT:?}"
            ))
            .into()),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(ret)) | Confirmation::Nack(Some(ret)))) => {
                Err(PublishError::Unroutable(format!(
                    "returned by RabbitMQ ({} {}): exchange {exchange:?}, routing key {routing_key:?}",
                    ret.reply_code, ret.reply_text
                )))
            }
            Ok(Ok(Confirmation::Nack(None))) => {
                Err(BrokerError::Refused("RabbitMQ nacked the message".into()).into())
            }
            Ok(Ok(Confirmation::NotRequested)) => Err(BrokerError::Unavailable(
                "publisher confirms are not enabled on the channel".into(),
            )
            .into()),
        }
    }

    /// Turns a delivery into a [`RabbitDelivery`]; an unreadable body is handed back.
    pub(super) fn delivery(
        self: &Arc<Self>,
        queue: &str,
        held: &Arc<AtomicU64>,
        d: LapinDelivery,
    ) -> Result<RabbitDelivery, Box<(LapinDelivery, BrokerError)>> {
        let envelope = match Envelope::from_bytes(&d.data) {
            Ok(env) => env,
            Err(e) => return Err(Box::new((d, e))),
        };
        let headers = d.properties.headers().as_ref();
        let attempt = attempt_of(headers, d.redelivered);
        let first_failure_ms = header_int(headers, HEADER_FIRST_FAILURE);
        held.fetch_add(1, Ordering::Relaxed);
        Ok(RabbitDelivery {
            inner: self.clone(),
            queue: queue.to_string(),
            envelope,
            body: d.data,
            attempt,
            first_failure_ms,
            acker: Some(d.acker),
            held: held.clone(),
        })
    }

    /// Parks a delivery whose body is not a readable envelope, then acks it; if parking
    /// fails, returns it to the queue (the delivery limit parks it in the end).
    pub(super) async fn park_unreadable(&self, queue: &str, d: LapinDelivery, why: BrokerError) {
        warn!(queue, error = %why, "parking an unreadable message");
        let now = now_ms();
        let headers = d.properties.headers().as_ref();
        let mut out = FieldTable::default();
        put_int(
            &mut out,
            HEADER_ATTEMPT,
            i64::from(attempt_of(headers, d.redelivered)),
        );
        put_str(
            &mut out,
            HEADER_REASON,
            &format!("unreadable message: {why}"),
        );
        put_int(&mut out, HEADER_FIRST_FAILURE, now);
        put_int(&mut out, HEADER_LAST_FAILURE, now);
        put_str(&mut out, HEADER_QUEUE, queue);
        let id = d
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let target = self.names.dead_queue(queue);
        let parked = self
            .publish_to_queue(queue, &target, &d.data, properties(&id, out))
            .await;
        let settle = async {
            match parked {
                Ok(()) => d.acker.ack(BasicAckOptions::default()).await,
                Err(e) => {
                    warn!(queue, error = %e, "could not park an unreadable message; it goes back to its queue");
                    d.acker
                        .nack(BasicNackOptions {
                            multiple: false,
                            requeue: true,
                        })
                        .await
                }
            }
        };
        let _ = tokio::time::timeout(SETTLE_TIMEOUT, settle).await;
    }

    /// Reads a parked message.
    pub(super) fn parse_dead(&self, queue: &str, d: &LapinDelivery) -> DeadLetter {
        let headers = d.properties.headers().as_ref();
        let envelope = Envelope::from_bytes(&d.data).unwrap_or_else(|e| Envelope {
            v: 0,
            id: d
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            kind: "unreadable".into(),
            business_key: String::new(),
            app: String::new(),
            created_at_ms: 0,
            body: crate::broker::Body::Legacy(format!("{e}: {}", String::from_utf8_lossy(&d.data))),
        });
        let death = x_death(headers);
        let attempt = header_int(headers, HEADER_ATTEMPT)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(1);
        let (reason, attempts) = match header_str(headers, HEADER_REASON) {
            Some(reason) => (reason, attempt),
            None => {
                let why = death
                    .as_ref()
                    .map_or("unknown", |d| d.reason.as_str())
                    .to_string();
                // parked by RabbitMQ itself: past the delivery limit
                let attempts = attempt.saturating_add(self.delivery_limit);
                (
                    format!(
                        "parked by RabbitMQ ({why}): returned unsettled more than {} times \
                         (x-delivery-limit)",
                        self.delivery_limit
                    ),
                    attempts,
                )
            }
        };
        let death_ms = death.as_ref().and_then(|d| d.time_ms);
        let first_failure_ms = header_int(headers, HEADER_FIRST_FAILURE)
            .or(death_ms)
            .unwrap_or(0);
        let last_failure_ms = header_int(headers, HEADER_LAST_FAILURE)
            .or(death_ms)
            .unwrap_or(first_failure_ms);
        DeadLetter {
            queue: header_str(headers, HEADER_QUEUE).unwrap_or_else(|| queue.to_string()),
            envelope,
            reason,
            attempts,
            first_failure_ms,
            last_failure_ms,
        }
    }

    /// Closes abandoned connections that came back, forgets those that are gone for good.
    pub(super) async fn reap_graveyard(&self) {
        let revived: Vec<(Instant, Arc<Link>)> = {
            let mut graves = lock(&self.graveyard);
            let (revived, rest): (Vec<_>, Vec<_>) =
                graves.drain(..).partition(|(_, l)| l.connected());
            graves.extend(rest.into_iter().filter(|(since, l)| {
                since.elapsed() < GRAVEYARD_WATCH
                    && !matches!(
                        conn_state(&l.conn),
                        ConnectionState::Error | ConnectionState::Closed
                    )
            }));
            revived
        };
        for (_, link) in revived {
            warn!("an abandoned RabbitMQ connection recovered by itself; closing it");
            close_connection(&link.conn).await;
        }
    }

    /// Opens a new connection and declares every known queue on it.
    pub(super) async fn open_and_declare(&self) -> Result<Arc<Link>, BrokerError> {
        let link = Link::open(&self.url, &self.names.prefix).await?;
        let queues: Vec<String> = read(&self.declared).iter().cloned().collect();
        if let Err(e) = self.declare_on(&link, &queues).await {
            close_connection(&link.conn).await;
            return Err(e);
        }
        Ok(Arc::new(link))
    }
}

/// A failed publish: unroutable (returned) or anything else.
pub(super) enum PublishError {
    Unroutable(String),
    Broker(BrokerError),
}

impl From<BrokerError> for PublishError {
    fn from(e: BrokerError) -> Self {
        PublishError::Broker(e)
    }
}

impl From<PublishError> for BrokerError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Unroutable(m) => BrokerError::Refused(m),
            PublishError::Broker(e) => e,
        }
    }
}

/// One connection and its publishing channels.
pub(super) struct Link {
    pub(super) conn: Connection,
    pub(super) publishers: Vec<Mutex<Option<Channel>>>,
    pub(super) next: AtomicUsize,
}

impl Link {
    pub(super) async fn open(url: &str, prefix: &str) -> Result<Link, BrokerError> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("wecom-bridge {prefix}").into())
            .with_backoff(lapin_backoff())
            .enable_auto_recover();
        let conn = Connection::connect(url, props)
            .await
            .map_err(|e| lapin_error("connecting to RabbitMQ", &e))?;
        let mut publishers = Vec::with_capacity(PUBLISH_CHANNELS);
        for _ in 0..PUBLISH_CHANNELS {
            match open_publisher(&conn).await {
                Ok(ch) => publishers.push(Mutex::new(Some(ch))),
                Err(e) => {
                    close_connection(&conn).await;
                    return Err(e);
                }
            }
        }
        Ok(Link {
            conn,
            publishers,
            next: AtomicUsize::new(0),
        })
    }

    pub(super) fn connected(&self) -> bool {
        self.conn.status().connected()
    }

    /// A publishing channel, round-robin; a channel that RabbitMQ closed is replaced.
    pub(super) async fn publisher(&self) -> Result<Channel, BrokerError> {
        let slot =
            &self.publishers[self.next.fetch_add(1, Ordering::Relaxed) % self.publishers.len()];
        if let Some(ch) = lock(slot).as_ref() {
            let status = ch.status();
            // a recovering channel fails the publish at once, which is what we want
            if status.connected() || status.reconnecting() {
                return Ok(ch.clone());
            }
        }
        let ch = open_publisher(&self.conn).await?;
        *lock(slot) = Some(ch.clone());
        Ok(ch)
    }
}

pub(super) async fn open_publisher(conn: &Connection) -> Result<Channel, BrokerError> {
    let ch = open_channel(conn).await?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| lapin_error("enabling publisher confirms", &e))?;
    Ok(ch)
}
