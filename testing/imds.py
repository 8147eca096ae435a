"""A fake EC2 instance metadata service on 127.0.0.1 that behaves as IMDSv2 with HttpTokens=required:
a session token from ``PUT /latest/api/token`` first, then GETs that carry it (no token or a revoked
one: 401), an unknown item is a 404. Used by tests/aws/test_ec2.py and the user-data boot test.
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeImds:
    """What EC2's metadata service does with HttpTokens=required: no token, no answer (401); an
    unknown item is a 404. ``items`` maps a meta-data path to its text; ``revoke()`` expires tokens."""

    def __init__(self):
        self.items = {"instance-id": "i-0123456789abcdef0", "autoscaling/target-lifecycle-state": "InService"}
        self.seen: list[tuple[str, str, str | None]] = []
        self.tokens: set[str] = set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code, body=b""):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                fake.seen.append(("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
                token = f"token-{len(fake.seen)}"
                fake.tokens.add(token)
                self._answer(200, token.encode())

            def do_GET(self):
                token = self.headers.get("X-aws-ec2-metadata-token")
                fake.seen.append(("GET", self.path, token))
                if token not in fake.tokens:
                    return self._answer(401)
                item = fake.items.get(self.path.removeprefix("/latest/meta-data/"))
                self._answer(404) if item is None else self._answer(200, item.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def revoke(self):
        self.tokens.clear()

    def __enter__(self) -> "FakeImds":
        # shutdown() waits for the loop's next look at its flag: every 0.5 s by default.
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
