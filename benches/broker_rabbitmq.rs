//! RabbitMQ broker benchmark (being written).
fn main() {}
