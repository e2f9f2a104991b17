"""A test service for the monitor: answers GET /health on --port, and misbehaves on request.

A test writes this process's pid into a file of PYTHON_APP_CONF named <program>.<what>:
  unhealthy: /health answers 500;  grow: memory grows by 16 MiB every 0.1 s;  crash: exit 3.
The file names a pid, so the process that replaces this one behaves again (and the service
never needs to write into the bundle).
"""
import argparse
import http.server
import os
import sys
import threading
import time

name = os.environ.get("SUPERVISOR_PROCESS_NAME", "manual")
conf = os.environ.get("PYTHON_APP_CONF", "")


def asked(what):
    try:
        with open(os.path.join(conf, name + "." + what)) as f:
            return f.read().strip() == str(os.getpid())
    except OSError:
        return False


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if asked("unhealthy") else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"sick\n" if code == 500 else b"ok\n")

    def log_message(self, *args):
        pass


parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
port = parser.parse_args().port
if port:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("watched " + name + " ready", flush=True)
hoard = []
while True:
    if asked("crash"):
        print("crashing on purpose: " + name, flush=True)
        sys.exit(3)
    if asked("grow") and len(hoard) < 64:
        hoard.append(bytearray(16 << 20))  # zero-filled: every page is touched
    time.sleep(0.1)
