"""Webhooks (issue 21): a tenant's endpoints receive signed events when a reviewer confirms or overrules
one of its gradings and when a dispute is resolved.

- `signing`: the `Refurbgrade-Signature` header (HMAC-SHA256 of `timestamp.body`, as Stripe signs);
- `outbox`: endpoint checks, the event payloads, and `enqueue`, which writes one outbox row per event and
  endpoint in the transaction of the grading event (serving/review/events.py calls it);
- `delivery`: the worker that claims due rows with a lease, POSTs them, logs every attempt and retries
  with exponential backoff: at-least-once delivery across restarts and replicas.

The API is serving/routes/webhooks.py; receivers check signatures with `refurbgrade.client.verify_signature`.
"""
