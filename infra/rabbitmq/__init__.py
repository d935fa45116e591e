"""The RabbitMQ adapters: the connection and confirmed publish, the topology, acks, the task and
control publishers, the dead-letter queue, queue limits and depths, and the production layout
(users, permissions) that `taskproc rabbitmq setup` applies."""
