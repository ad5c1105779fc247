"""Event sourcing with CQRS: orders as append-only event streams on a real database (SQLite
or PostgreSQL), a read model projected from them in-process, served over the REST wire."""
