"""The runtime every layer stands on: ``RunContext`` (what a run body sees), ``RunKind`` and ``Outcome``,
the ``Workspace``, the pending-commit buffer, the run's ledger view, the key schema, the ``ModelRouter``
protocol, and the ``RunStore`` protocol with its in-memory test double. ``core`` imports only the schema.
"""
