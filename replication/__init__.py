"""pyjk's cluster: membership, sealed channel and session replication between workers.

Run a worker with `--cluster conf/cluster.toml` (docs/cluster.md). The pure parts decide —
membership.py (who is in), ordering.py (which deltas apply when), merge.py (how replicas
agree), replicator.py (deltas, snapshots, touches, expiry), ledger.py (exactly once),
seal.py / codec.py (envelopes and messages), config.py (cluster.toml) — and the asyncio shell
moves bytes: node.py (wiring), mcast.py, channel.py, syncing.py, endpoints.py.
"""
