"""Test fixtures: one private TimescaleDB and Mosquitto per test session.

The session's servers live in a temporary var/ on free ports, so tests never touch the
developer's own var/ (or a running `make demo`). Each test that needs a database gets its
own, copied from a migrated template; each test that needs MQTT gets a unique estate code
so its topics cannot meet another test's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from estate import db
from estate.services import PrivateServices
from ingest.worker import Worker
from tests.support.pipeline import Feeder, Running
from tests.support.stack import TEMPLATE, Stack, copy_template, make_settings


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = make_settings(tmp_path_factory.mktemp("var"))
    services = PrivateServices(settings)
    with services.running() as ep:
        st = Stack(settings, services, ep.database_url, ep.mqtt_url, ep.mqtt_device_url)
        with psycopg.connect(st.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        db.upgrade(st.url_for(TEMPLATE))
        with psycopg.connect(st.url_for("postgres"), autocommit=True) as conn:
            # TimescaleDB's scheduler keeps a background connection to every database with
            # the extension, and CREATE DATABASE ... TEMPLATE needs the template idle. With
            # connections disallowed the launcher leaves the template alone.
            conn.execute(f"ALTER DATABASE {TEMPLATE} WITH ALLOW_CONNECTIONS false")
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (TEMPLATE,),
            )
        yield st


@pytest.fixture
def database_url(stack: Stack) -> Iterator[str]:
    """A fresh, fully migrated database for this test only."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(stack.url_for("postgres"), autocommit=True) as conn:
        copy_template(conn, name, TEMPLATE)
    try:
        yield stack.url_for(name)
    finally:
        with psycopg.connect(stack.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture
def estate_code() -> str:
    """A unique estate code: topics under estate/v1/<code>/ belong to this test alone."""
    return f"T{uuid.uuid4().hex[:10]}"


@pytest.fixture
def feeder(stack: Stack) -> Iterator[Feeder]:
    f = Feeder(stack)
    yield f
    f.close()


@pytest.fixture
def running() -> Iterator[Callable[[Worker], Running]]:
    made: list[Running] = []

    def start(w: Worker) -> Running:
        r = Running(w)
        made.append(r)
        return r

    yield start
    for r in made:
        if r.thread.is_alive():
            r.close()
