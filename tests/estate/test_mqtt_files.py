from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from estate.mqtt import AclEntry, Address, hash_password, render_acl


def test_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    """Our $7$ hash equals mosquitto_passwd's for the same password and salt."""
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pwfile), "alice", "s3cret"], check=True)
    _, theirs = pwfile.read_text().strip().split(":", 1)
    salt = base64.b64decode(theirs.split("$")[3])
    assert hash_password("s3cret", salt=salt) == theirs
    assert hash_password("other", salt=salt) != theirs


def test_acl_lists_each_users_topics() -> None:
    text = render_acl([AclEntry(user="dev1", write=("estate/v1/E/elevator/dev1/#",), read=("a",))])
    assert text == "user dev1\ntopic read a\ntopic write estate/v1/E/elevator/dev1/#\n"


def test_an_mqtt_url_names_one_broker_or_a_clusters_nodes() -> None:
    one = Address.parse("mqtt://svc:p%40ss@broker.example:1884")
    assert (one.host, one.port, one.username, one.password) == (
        "broker.example",
        1884,
        "svc",
        "p@ss",
    )
    assert one.nodes == (("broker.example", 1884),)
    assert Address.parse("mqtt://10.0.0.1").nodes == (("10.0.0.1", 1883),)
    three = Address.parse("mqtt://svc:pw@10.0.0.1:11901,10.0.0.2:11902,[::1]")
    assert three.nodes == (("10.0.0.1", 11901), ("10.0.0.2", 11902), ("::1", 1883))
    assert (three.username, three.password) == ("svc", "pw")
    # a device's login on the same cluster keeps the nodes
    assert three.login("E1.L1", "x").nodes == three.nodes
