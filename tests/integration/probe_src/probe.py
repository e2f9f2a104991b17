"""A test service: records how it was started (argv, environment, interpreter), then waits.

If PYTHON_APP_CONF holds a file named crash-<program>, it exits at once instead, so a test can
make any service fail without rebuilding the bundle.
"""
import json
import os
import sys
import time

name = os.environ.get("SUPERVISOR_PROCESS_NAME", "manual")
conf = os.environ.get("PYTHON_APP_CONF", "")
if os.path.exists(os.path.join(conf, "crash-" + name)):
    print("crashing on purpose: " + name, flush=True)
    sys.exit(3)
report = {
    "program": name, "pid": os.getpid(), "argv": sys.argv[1:], "env": dict(os.environ),
    "executable": sys.executable, "version": sys.version, "prefix": sys.prefix,
    "base_prefix": sys.base_prefix, "file": __file__,
}
path = os.path.join(os.environ["BUNDLE_ROOT"], "log", name + ".json")
with open(path + ".tmp", "w") as f:
    json.dump(report, f)
os.replace(path + ".tmp", path)
print("probe " + name + " ready", flush=True)
while True:
    time.sleep(1)
