"""Pieces of the policy server (:mod:`policies.server`): the request format, the chunk-per-request
policy, the batching model worker and client-side VQ tokenisation."""
