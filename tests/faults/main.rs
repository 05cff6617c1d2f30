//! Fault tests against the real RabbitMQ (being written).
