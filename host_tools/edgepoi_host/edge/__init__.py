"""The home edge node: MQTT ingest, ledger, (later) verification, audits and settlement."""
