"""A test web service whose processes share one port (SO_REUSEPORT), as a numprocs service does.

GET / answers "<version> <pid>"; GET /health answers 200, or 500 when the version is "sick".
The version is the VERSION file beside this one, so each code version of the test says its own.
On SIGTERM it stops accepting, answers what it has accepted, and exits.
"""
import http.server
import os
import pathlib
import signal
import socket
import sys
import threading

VERSION = (pathlib.Path(__file__).parent / "VERSION").read_text().strip()


class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        sick = self.path == "/health" and VERSION == "sick"
        body = f"{VERSION} {os.getpid()}\n".encode()
        self.send_response(500 if sick else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print(f"web {VERSION} listening", flush=True)
server.serve_forever()
server.server_close()
