//! RabbitMQ broker through lapin (stub; being implemented).
