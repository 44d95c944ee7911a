"""Pieces of the policy server (:mod:`policies.server`): the request format, the model side
(:class:`~policies.serving.served_policy.ServedPolicy`, one window per connection), the batching
model worker and client-side VQ tokenisation."""
