//! Consumers: the task behind one `Consumer`, which survives connection losses.

use super::*;

/// The task behind one [`Consumer`]: pushes deliveries into the bounded channel and keeps the
/// AMQP consumer alive across connection losses.
pub(super) struct ConsumerTask {
    pub(super) inner: Arc<Inner>,
    pub(super) queue: String,
    pub(super) tag: String,
    pub(super) held: Arc<AtomicU64>,
    pub(super) tx: mpsc::Sender<Result<RabbitDelivery, BrokerError>>,
    pub(super) stop: oneshot::Receiver<()>,
    pub(super) links: watch::Receiver<Option<Arc<Link>>>,
    pub(super) shutdown: Shutdown,
}

/// Why a consuming session ended.
pub(super) enum End {
    /// The consumer was dropped or the broker closed.
    Stop,
    /// The AMQP consumer is gone: open a new one.
    Reopen,
}

impl ConsumerTask {
    pub(super) async fn run(
        mut self,
        mut link: Arc<Link>,
        mut channel: Channel,
        mut stream: lapin::Consumer,
    ) {
        let mut backoff = consumer_backoff();
        self.links.mark_unchanged();
        loop {
            let end = self.pump(&link, &channel, &mut stream).await;
            close_channel(&channel).await;
            if let End::Stop = end {
                return;
            }
            // open a new AMQP consumer, on whatever connection is current
            loop {
                let Some(next) = self.wait_for_link().await else {
                    return;
                };
                let work = self.inner.names.work_queue(&self.queue);
                match op(open_consumer(&next, &work, &self.tag, self.inner.prefetch)).await {
                    Ok((ch, st)) => {
                        info!(queue = %self.queue, "consumer resumed");
                        backoff.reset();
                        link = next;
                        channel = ch;
                        stream = st;
                        break;
                    }
                    Err(e) => {
                        let wait = backoff.next_delay();
                        warn!(queue = %self.queue, error = %e, retry_in_ms = wait.as_millis() as u64, "could not resume consumer");
                        if self.sleep_or_stop(wait).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Forwards deliveries until the consumer stops or the AMQP consumer is gone.
    pub(super) async fn pump(
        &mut self,
        link: &Arc<Link>,
        channel: &Channel,
        stream: &mut lapin::Consumer,
    ) -> End {
        loop {
            let item = tokio::select! {
                biased;
                _ = &mut self.stop => return End::Stop,
                _ = self.shutdown.stopped() => return End::Stop,
                _ = self.tx.closed() => return End::Stop,
                changed = self.links.changed() => {
                    if changed.is_err() {
                        return End::Stop;
                    }
                    if !same_link(&self.links.borrow(), link) {
                        debug!(queue = %self.queue, "connection replaced; re-creating the consumer");
                        return End::Reopen;
                    }
                    continue;
                }
                item = stream.next() => item,
            };
            match item {
                Some(Ok(d)) => match self.inner.delivery(&self.queue, &self.held, d) {
                    Ok(delivery) => {
                        tokio::select! {
                            biased;
                            _ = &mut self.stop => return End::Stop,
                            sent = self.tx.send(Ok(delivery)) => if sent.is_err() { return End::Stop },
                        }
                    }
                    Err(unreadable) => {
                        let (d, why) = *unreadable;
                        self.inner.park_unreadable(&self.queue, d, why).await
                    }
                },
                Some(Err(e)) => {
                    if channel.status().reconnecting() {
                        debug!(queue = %self.queue, error = %e, "consumer channel recovering");
                        match self.wait_for_channel(link, channel).await {
                            Some(true) => continue,
                            Some(false) => return End::Reopen,
                            None => return End::Stop,
                        }
                    }
                    warn!(queue = %self.queue, error = %e, "consumer failed; re-creating it");
                    return End::Reopen;
                }
                None => {
                    warn!(queue = %self.queue, "consumer cancelled by RabbitMQ; re-creating it");
                    return End::Reopen;
                }
            }
        }
    }

    /// Waits for a recovering channel: `Some(true)` back, `Some(false)` gone, `None` stop.
    pub(super) async fn wait_for_channel(
        &mut self,
        link: &Arc<Link>,
        channel: &Channel,
    ) -> Option<bool> {
        loop {
            if channel.status().connected() {
                return Some(true);
            }
            if !channel.status().reconnecting() || !same_link(&self.links.borrow(), link) {
                return Some(false);
            }
            if self.sleep_or_stop(Duration::from_millis(200)).await {
                return None;
            }
        }
    }

    /// Waits until there is a connected link; `None` if the consumer must stop.
    pub(super) async fn wait_for_link(&mut self) -> Option<Arc<Link>> {
        loop {
            if let Some(l) = self.links.borrow_and_update().clone()
                && l.connected()
            {
                return Some(l);
            }
            if self.sleep_or_stop(Duration::from_millis(200)).await {
                return None;
            }
        }
    }

    /// Sleeps; true if the consumer must stop.
    pub(super) async fn sleep_or_stop(&mut self, wait: Duration) -> bool {
        if self.shutdown.is_stopping() {
            return true;
        }
        tokio::select! {
            biased;
            _ = &mut self.stop => true,
            _ = self.shutdown.stopped() => true,
            _ = self.tx.closed() => true,
            _ = tokio::time::sleep(wait) => false,
        }
    }
}

pub(super) fn same_link(current: &Option<Arc<Link>>, link: &Arc<Link>) -> bool {
    current.as_ref().is_some_and(|c| Arc::ptr_eq(c, link))
}

/// A channel with `basic.qos(prefetch)` and a manual-ack consumer on `queue`.
pub(super) async fn open_consumer(
    link: &Link,
    queue: &str,
    tag: &str,
    prefetch: u16,
) -> Result<(Channel, lapin::Consumer), BrokerError> {
    let ch = open_channel(&link.conn).await?;
    let setup = async {
        ch.basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(|e| lapin_error("setting the prefetch", &e))?;
        ch.basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| lapin_error(&format!("consuming {queue}"), &e))
    };
    match setup.await {
        Ok(stream) => Ok((ch, stream)),
        Err(e) => {
            close_channel(&ch).await;
            Err(e)
        }
    }
}
