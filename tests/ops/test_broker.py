"""The broker transport (config.broker): kombu's Redis transport with one Redis client per
channel instead of one per publish and acknowledgement, against the real Redis."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer, Queue
from kombu.common import ignore_errors
from kombu.transport import get_transport_cls, redis

from config.broker import Channel, Transport
from config.celery import app


@pytest.fixture
def channel() -> Iterator[Any]:
    with app.connection_for_write() as connection:
        yield connection.default_channel


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every Redis client the channels build from now on."""
    clients: list[Any] = []
    original = Channel._create_client

    def create(self: Channel, asynchronous: bool = False) -> Any:
        client = original(self, asynchronous)
        if not asynchronous:
            clients.append(client)
        return client

    monkeypatch.setattr(Channel, "_create_client", create)
    return clients


def test_the_celery_app_uses_it_for_a_redis_broker(channel: Any) -> None:
    assert isinstance(channel, Channel)
    # the URL keeps its scheme: Flower picks its broker client by it (tests/ops/test_flower.py)
    assert channel.connection.client.as_uri().startswith("redis://")


def test_other_schemes_keep_kombus_transports() -> None:
    assert get_transport_cls("rediss") is redis.Transport
    assert get_transport_cls("amqp") is not Transport


def test_messages_published_and_consumed_share_one_client(channel: Any, built: list[Any]) -> None:
    queue = Queue("oe-test-broker", Exchange("oe-test-broker"), routing_key="oe-test-broker")
    bound = queue(channel)
    bound.declare()
    try:
        producer = Producer(channel)
        for n in range(20):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="oe-test-broker")
        received = []
        while (message := bound.get(no_ack=False)) is not None:
            received.append(message.payload["n"])
            message.ack()
        assert received == list(range(20))
        assert len(built) == 1  # not one per publish, get and acknowledgement
    finally:
        bound.delete()


def test_a_new_pool_gets_a_new_client(channel: Any, built: list[Any]) -> None:
    with channel.conn_or_acquire() as first:
        assert first.ping()
    channel._disconnect_pools()  # what kombu does after a connection error
    with channel.conn_or_acquire() as second:
        assert second.ping()
    assert second is not first
    assert second.connection_pool is channel.pool
    assert built == [first, second]


def test_a_client_given_is_used_as_is(channel: Any, built: list[Any]) -> None:
    given = object()
    with channel.conn_or_acquire(given) as client:
        assert client is given
    assert built == []


def test_a_worker_survives_redis_dying_while_it_waits_on_brpop(private_redis: Any) -> None:
    """Redis killed while the worker's channel waits on BRPOP with a task delivered and not yet
    acknowledged: what the worker's consumer then does (`collect`, then `close`, as in
    celery's `Consumer.on_connection_error_after_connected`) must raise nothing but a connection
    error, which the consumer handles by reconnecting. kombu's own channel, closed during
    `collect`, let the BRPOP's connection error escape before it marked itself closed, and so
    did the next channel `collect` closed, which stopped it closing the rest; the second close
    then restored the unacknowledged task through a transport already detached
    from its connection (`AttributeError: 'NoneType' object has no attribute 'hostname'`),
    and celery stopped the worker as an unrecoverable error (tests/faults/test_redis_restart.py
    caught it once in three runs on a machine with one core kept busy)."""
    connection = Connection(private_redis.url)
    channel = connection.default_channel
    assert isinstance(channel, Channel)
    queue = Queue("oe-test-brpop", Exchange("oe-test-brpop"), routing_key="oe-test-brpop")
    queue(channel).declare()
    Producer(channel).publish({"n": 1}, exchange=queue.exchange, routing_key="oe-test-brpop")
    delivered: list[Any] = []
    channel.basic_consume(
        "oe-test-brpop", no_ack=False, callback=delivered.append, consumer_tag="oe-test"
    )
    connection.drain_events(timeout=5)
    assert len(delivered) == 1 and channel.qos._delivered  # delivered, not acknowledged
    channel._brpop_start()  # waiting on BRPOP for the next task
    other = connection.channel()  # the worker's others (remote control, events), also waiting
    queue(other).declare()
    other.basic_consume("oe-test-brpop", no_ack=True, callback=delivered.append, consumer_tag="o")
    other.client.connection = other.client.connection_pool.get_connection()  # as kombu's poller
    other._brpop_start()
    assert channel._in_poll and other._in_poll

    private_redis.kill()
    with contextlib.suppress(Exception):  # celery ignores whatever collect raises
        connection.collect(socket_timeout=1)
    # then closes, ignoring connection errors only: anything else stops the worker
    ignore_errors(connection, connection.close)
    assert channel.closed
