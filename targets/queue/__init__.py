"""The queue target: the order service over RabbitMQ with aio-pika (RPC lookups, confirmed
create commands completed by events, dead-lettering of malformed messages)."""
