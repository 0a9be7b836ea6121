"""Fakes that ship with fotawatch, for its own tests, chaos tests and benchmarks (like
``structlog.testing``): real servers on 127.0.0.1 that answer like the services they stand for.

- ``fotawatch.testing.fake_slack``: ``FakeSlack``, a Slack incoming-webhook receiver with
  scriptable failures, rate limiting and message validation; also a generic webhook receiver,
  and a subprocess mode (``python -m fotawatch.testing.fake_slack --port 0``).

Import the fakes from their modules: this ``__init__`` imports nothing, so running a fake with
``python -m`` does not import it twice.
"""

__all__: list[str] = []
