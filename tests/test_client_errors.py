"""What a client is told never carries the server's file paths."""

from catdog.serving.client_errors import public


def test_server_paths_become_their_last_part():
    told = public("no model version 'v9' in /srv/catdog/data/registry (versions: v0001)")
    assert told == "no model version 'v9' in <registry> (versions: v0001)"
    assert public("cannot load the model: [Errno 2] No such file: '/tmp/x/model.keras'").endswith("'<model.keras>'")


def test_what_is_not_a_path_stays():
    for message in ("image[1]: not an image", "send 3 files at most", "ratio 1/2", "http://host/v2 is fine"):
        assert public(message) == message
