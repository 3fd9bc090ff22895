"""Minimal Neutron stand-in (fallback only, when the real neutron-server cannot run).

Answers every GET of a collection under /v2.0 with an empty list, and the version document
on /. Enough for Nova with `networks: "none"`: boot, live migration, evacuation, delete.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0].rstrip("/")
        if path in ("", "/"):
            return self._send(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": []}]})
        coll = path.rsplit("/", 1)[-1]
        if path.startswith("/v2.0/") and coll.replace("-", "_").isidentifier():
            return self._send(200, {coll.replace("-", "_"): []})
        return self._send(404, {"NeutronError": {"message": "not found in the lab stand-in"}})

    def do_DELETE(self):  # noqa: N802
        self._send(204, {})

    def log_message(self, fmt, *args):
        sys.stdout.write("%s %s\n" % (self.address_string(), fmt % args))
        sys.stdout.flush()


if __name__ == "__main__":
    ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
