"""The live coordination service's engine side: the executor core hosted for real time.

- `coordinator.py`: :class:`LiveCoordinator`, the core plus agent leases, task
  records and the event log (synchronous, clock injected: unit-testable);
- `service.py`: :class:`LiveService`, the coordinator on asyncio (long-poll
  pulls, group-committed durability, lease expiry, periodic re-solves);
- `store.py`: the durable event log (SQLite / PostgreSQL); replayed into a
  fresh core on start, so a restart loses no task (event sourcing).

Nothing is imported here: `from allocator.live.store import make_engine` must
stay cheap for the job store.
"""
