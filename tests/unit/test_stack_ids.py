"""The local stack's generated identifiers."""

from __future__ import annotations

import base64

from metalcast.stack.kafka import new_cluster_id


def test_kraft_cluster_ids_never_look_like_an_option() -> None:
    ids = [new_cluster_id() for _ in range(5000)]  # ~78 would start with "-" unfiltered
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids)
    for i in ids[:100]:
        assert len(i) == 22
        assert len(base64.urlsafe_b64decode(i + "==")) == 16
