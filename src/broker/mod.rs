//! Broker: one contract, two back ends (embedded on the store, and RabbitMQ). Built next.
