"""The order flow: the domain of the three-service topology (edge, payment, inventory, and on
the queue a notification service). Every transport's adapters call into this package and
nothing here knows a transport: the seeded outcomes, each service's rules and store, the
synchronous chain's orchestration, the saga's reactions, and the reconciliation."""
